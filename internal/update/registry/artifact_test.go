package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/update"
)

// testBundle is a bundle's manifest.json, signature and parsed manifest.
func testBundle(t testing.TB) ([]byte, []byte, update.Manifest) {
	t.Helper()
	m := update.Manifest{
		Format: update.FormatVersion, Board: "qemu-virt", ID: "0123456789abcdef", Created: 1700000000, Cmdline: "console=ttyAMA0",
		Payloads: []update.Payload{
			{Name: update.RootFull, Kind: update.KindRootFull, SHA256: strings.Repeat("a", 64), Size: 1 << 30},
			{Name: update.RootFrom("fedcba9876543210"), Kind: update.KindRootIncremental, Parent: "fedcba9876543210", SHA256: strings.Repeat("b", 64), Size: 1 << 20},
			{Name: update.BootKernel, Kind: update.KindBoot, BootName: update.BootKernel, SHA256: strings.Repeat("c", 64), Size: 20 << 20},
			{Name: update.BootInitrd, Kind: update.KindBoot, BootName: update.BootInitrd, SHA256: strings.Repeat("d", 64), Size: 9 << 20},
		},
	}
	mb, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return mb, []byte("c2lnbmF0dXJl\n"), m
}

func TestBundleManifest(t *testing.T) {
	mb, sig, m := testBundle(t)
	om := BundleManifest(mb, sig, m)
	b, err := om.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseManifest(b)
	if err != nil {
		t.Fatalf("ParseManifest of BundleManifest: %v\n%s", err, b)
	}
	if got.ArtifactType != ArtifactType || got.Config.Digest != DigestOf(mb) || got.Config.Size != int64(len(mb)) {
		t.Errorf("config %+v", got.Config)
	}
	if len(got.Layers) != 1+len(m.Payloads) {
		t.Fatalf("%d layers", len(got.Layers))
	}
	for _, p := range m.Payloads {
		l, ok := got.Layer(p.Name)
		if !ok || l.Digest != "sha256:"+p.SHA256 || l.Size != p.Size || l.MediaType != LayerMediaType(p.Kind) {
			t.Errorf("layer %s: %+v %v", p.Name, l, ok)
		}
	}
	if l, ok := got.Layer(update.SignatureFile); !ok || l.Digest != DigestOf(sig) || l.MediaType != MediaTypeSignature {
		t.Errorf("signature layer %+v %v", l, ok)
	}
}

func TestParseManifestRefuses(t *testing.T) {
	mb, sig, m := testBundle(t)
	good := BundleManifest(mb, sig, m)
	edit := func(f func(m *Manifest)) []byte {
		c := good
		c.Layers = append([]Descriptor(nil), good.Layers...)
		f(&c)
		b, _ := json.Marshal(c)
		return b
	}
	many := make([]Descriptor, update.MaxPayloads+2)
	for i := range many {
		many[i] = good.Layers[0]
	}
	for _, c := range []struct {
		name string
		in   []byte
		err  string
	}{
		{"schema 1", edit(func(m *Manifest) { m.SchemaVersion = 1 }), "schemaVersion"},
		{"an index", edit(func(m *Manifest) { m.MediaType = "application/vnd.oci.image.index.v1+json" }), "mediaType"},
		{"a container image", edit(func(m *Manifest) {
			m.ArtifactType = ""
			m.Config.MediaType = "application/vnd.oci.image.config.v1+json"
		}), "not an update bundle"},
		{"other config", edit(func(m *Manifest) { m.Config.MediaType = "application/json" }), "config mediaType"},
		{"config too big", edit(func(m *Manifest) { m.Config.Size = update.MaxManifestSize + 1 }), "out of range"},
		{"negative size", edit(func(m *Manifest) { m.Layers[1].Size = -1 }), "out of range"},
		{"md5 digest", edit(func(m *Manifest) { m.Layers[1].Digest = "md5:00" }), "digest"},
		{"digest with a path", edit(func(m *Manifest) { m.Layers[1].Digest = "sha256:../../etc/passwd" }), "digest"},
		{"no signature layer", edit(func(m *Manifest) { m.Layers = m.Layers[1:] }), "manifest.sig"},
		{"too many layers", edit(func(m *Manifest) { m.Layers = many }), "layers"},
		{"not JSON", []byte("<html>"), "OCI manifest"},
		{"trailing data", append(edit(func(*Manifest) {}), []byte(" {}")...), "after"},
		{"huge", bytes.Repeat([]byte(" "), MaxManifestSize+1), "more than"},
		{"null", []byte("null"), "schemaVersion"},
	} {
		_, err := ParseManifest(c.in)
		if !errors.Is(err, update.ErrInvalid) || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: %v, want ErrInvalid saying %q", c.name, err, c.err)
		}
	}
}

// FuzzParseManifest: no input panics, and what is accepted is a bundle's
// OCI manifest: every digest sha256 and 64 hex digits (it goes into a
// URL path), every size in range, a signature layer.
func FuzzParseManifest(f *testing.F) {
	mb, sig, m := testBundle(f)
	good, _ := BundleManifest(mb, sig, m).Marshal()
	f.Add(good)
	f.Add([]byte(`{"schemaVersion":2}`))
	f.Add(bytes.Replace(good, []byte(`"size": 89`), []byte(`"size": -1`), 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		om, err := ParseManifest(b)
		if err != nil {
			return
		}
		for _, d := range append([]Descriptor{om.Config}, om.Layers...) {
			if !blobDigestRE.MatchString(d.Digest) || d.Size < 0 || d.Size > update.MaxPayloadSize {
				t.Fatalf("accepted descriptor %+v", d)
			}
		}
		if _, ok := om.Layer(update.SignatureFile); !ok {
			t.Fatal("accepted a manifest without a signature layer")
		}
	})
}

// FuzzParseRef: no input panics; what is accepted has a host, parses
// again to itself from String, and puts nothing in a URL that would
// change its meaning.
func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"reg.example/fleet/c2:v2", "127.0.0.1:5000/a@sha256:" + strings.Repeat("0", 64), "[::1]:5000/a", "a/b", "reg.example/a:b:c", "localhost/x//y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRef(s)
		if err != nil {
			return
		}
		if r.Host == "" || r.Repo == "" || (r.Tag == "" && r.Digest == "") {
			t.Fatalf("%q: accepted %+v", s, r)
		}
		if strings.ContainsAny(r.Host+r.Repo+r.Tag+r.Digest, "?#%@ \t\r\n\\") || strings.Contains(r.Repo, "..") {
			t.Fatalf("%q: accepted %+v", s, r)
		}
		again, err := ParseRef(r.String())
		if err != nil || again != r {
			t.Fatalf("%q: ParseRef(%q) = %+v, %v; want %+v", s, r.String(), again, err, r)
		}
	})
}
