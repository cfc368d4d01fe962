// Package ocitest builds a small multi-platform container image in a
// test and pushes it with the project's registry client: an OCI index
// with linux/amd64 and linux/arm64 manifests; the arm64 image has two
// layers (gzip, then zstd with whiteouts) and a config with Entrypoint,
// Cmd, Env, WorkingDir and User.
package ocitest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/mkimage/mkimage/internal/update/registry"
)

// Created is the image's creation time.
var Created = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// Image is what Push pushed.
type Image struct {
	Ref         registry.Ref // by tag
	IndexDigest string
	Arm64       string                // the arm64 manifest's digest
	Layers      []registry.Descriptor // the arm64 layers
	Config      registry.Descriptor   // the arm64 config
}

// Entry is one tar member.
type Entry struct {
	Name, Link string
	Type       byte
	Data       string
	Mode       int64
	Uid, Gid   int
	Xattrs     map[string]string
}

// Tar is a tar of the entries, times Created.
func Tar(t testing.TB, ents []Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.Name, Linkname: e.Link, Typeflag: e.Type, Mode: e.Mode, Uid: e.Uid, Gid: e.Gid,
			ModTime: Created, Format: tar.FormatPAX}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if e.Type == tar.TypeReg {
			h.Size = int64(len(e.Data))
		}
		for k, v := range e.Xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.Data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Gzip and Zstd compress b.
func Gzip(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	z := gzip.NewWriter(&buf)
	z.Write(b)
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func Zstd(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	z, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	z.Write(b)
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Layer0 and Layer1 are the arm64 image's layers, uncompressed.
var (
	Layer0 = []Entry{
		{Name: "bin/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "bin/app", Type: tar.TypeReg, Data: "app v1", Mode: 0o755, Xattrs: map[string]string{"security.capability": "\x01\x00\x00\x02"}},
		{Name: "bin/app-link", Type: tar.TypeLink, Link: "bin/app"},
		{Name: "bin/sh", Type: tar.TypeSymlink, Link: "/bin/app"},
		{Name: "etc/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "etc/passwd", Type: tar.TypeReg, Data: "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/srv:/bin/sh\n"},
		{Name: "etc/group", Type: tar.TypeReg, Data: "root:x:0:\napp:x:1001:\n"},
		{Name: "etc/removed", Type: tar.TypeReg, Data: "gone"},
		{Name: "old/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "old/file", Type: tar.TypeReg, Data: "old"},
		{Name: "srv/", Type: tar.TypeDir, Mode: 0o750, Uid: 1000, Gid: 1001},
		{Name: "srv/data", Type: tar.TypeReg, Data: "data", Uid: 1000, Gid: 1001},
	}
	Layer1 = []Entry{
		{Name: ".wh.old", Type: tar.TypeReg},
		{Name: "etc/.wh.removed", Type: tar.TypeReg},
		{Name: "srv/.wh..wh..opq", Type: tar.TypeReg},
		{Name: "srv/new", Type: tar.TypeReg, Data: "new", Uid: 1000, Gid: 1001},
		{Name: "bin/tool", Type: tar.TypeReg, Data: "tool", Mode: 0o755},
	}
)

// ImageConfig is the arm64 image's config.
func ImageConfig(arch string) map[string]any {
	return map[string]any{
		"architecture": arch, "os": "linux", "created": Created.Format(time.RFC3339),
		"config": map[string]any{
			"Entrypoint": []string{"/bin/app"},
			"Cmd":        []string{"--greeting", "hello world", "it's"},
			"Env":        []string{"PATH=/usr/bin:/bin", "GREETING=hi there"},
			"WorkingDir": "/srv",
			"User":       "app",
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{}},
	}
}

func mustJSON(t testing.TB, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pusher pushes blobs and manifests to one repository.
type pusher struct {
	t   testing.TB
	c   *registry.Client
	ref registry.Ref
}

func (p pusher) blob(b []byte, mt string) registry.Descriptor {
	p.t.Helper()
	d := registry.Descriptor{MediaType: mt, Digest: registry.DigestOf(b), Size: int64(len(b))}
	if _, err := p.c.PushBlob(context.Background(), p.ref, d, func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }); err != nil {
		p.t.Fatal(err)
	}
	return d
}

// manifest pushes an image manifest by digest.
func (p pusher) manifest(cfg registry.Descriptor, layers ...registry.Descriptor) registry.Descriptor {
	p.t.Helper()
	b := mustJSON(p.t, registry.Manifest{SchemaVersion: 2, MediaType: registry.MediaTypeManifest, Config: cfg, Layers: layers})
	r := p.ref
	r.Tag, r.Digest = "", registry.DigestOf(b)
	if _, err := p.c.PutManifest(context.Background(), r, b); err != nil {
		p.t.Fatal(err)
	}
	return registry.Descriptor{MediaType: registry.MediaTypeManifest, Digest: r.Digest, Size: int64(len(b))}
}

// Push pushes the image to ref (host/repo:tag) through c.
func Push(t testing.TB, c *registry.Client, ref registry.Ref) Image {
	t.Helper()
	p := pusher{t, c, ref}
	var img Image
	img.Ref = ref
	l0 := p.blob(Gzip(t, Tar(t, Layer0)), "application/vnd.oci.image.layer.v1.tar+gzip")
	l1 := p.blob(Zstd(t, Tar(t, Layer1)), "application/vnd.oci.image.layer.v1.tar+zstd")
	img.Layers = []registry.Descriptor{l0, l1}
	img.Config = p.blob(mustJSON(t, ImageConfig("arm64")), registry.MediaTypeImageConfig)
	arm := p.manifest(img.Config, l0, l1)
	img.Arm64 = arm.Digest
	amdLayer := p.blob(Gzip(t, Tar(t, []Entry{{Name: "amd64", Type: tar.TypeReg, Data: "wrong arch"}})), "application/vnd.oci.image.layer.v1.tar+gzip")
	amd := p.manifest(p.blob(mustJSON(t, ImageConfig("amd64")), registry.MediaTypeImageConfig), amdLayer)
	ix := registry.Index{SchemaVersion: 2, MediaType: registry.MediaTypeImageIndex, Manifests: []registry.IndexEntry{
		{Descriptor: amd, Platform: &registry.Platform{OS: "linux", Architecture: "amd64"}},
		{Descriptor: arm, Platform: &registry.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}},
	}}
	d, err := c.PutManifest(context.Background(), ref, mustJSON(t, ix))
	if err != nil {
		t.Fatal(err)
	}
	img.IndexDigest = d
	return img
}

// PushArm64 pushes a single-platform linux/arm64 image tagged ref: one
// gzip layer of entries and a config running cmd.
func PushArm64(t testing.TB, c *registry.Client, ref registry.Ref, entries []Entry, cmd []string) {
	t.Helper()
	p := pusher{t, c, ref}
	layer := p.blob(Gzip(t, Tar(t, entries)), "application/vnd.oci.image.layer.v1.tar+gzip")
	cfg := p.blob(mustJSON(t, map[string]any{
		"architecture": "arm64", "os": "linux", "created": Created.Format(time.RFC3339),
		"config": map[string]any{"Cmd": cmd},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{}},
	}), registry.MediaTypeImageConfig)
	b := mustJSON(t, registry.Manifest{SchemaVersion: 2, MediaType: registry.MediaTypeManifest, Config: cfg, Layers: []registry.Descriptor{layer}})
	if _, err := c.PutManifest(context.Background(), ref, b); err != nil {
		t.Fatal(err)
	}
}
