package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/mkimage/mkimage/internal/update"
)

// Media types of container images (OCI and Docker's), which the build
// host pulls to make LXC containers' roots.
const (
	MediaTypeImageIndex     = "application/vnd.oci.image.index.v1+json"
	MediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeImageConfig    = "application/vnd.oci.image.config.v1+json"
	MediaTypeDockerConfig   = "application/vnd.docker.container.image.v1+json"
)

// ImageLayerTypes are the layer media types an image may have: plain,
// gzip and zstd tars (OCI), and Docker's gzip tar. Foreign and
// non-distributable layers are refused: their bytes are not in the
// registry the reference names.
var ImageLayerTypes = []string{
	"application/vnd.oci.image.layer.v1.tar",
	"application/vnd.oci.image.layer.v1.tar+gzip",
	"application/vnd.oci.image.layer.v1.tar+zstd",
	"application/vnd.docker.image.rootfs.diff.tar.gzip",
}

// Limits of what an image may claim: a few thousand layers' descriptors
// fit in MaxManifestSize; an image config is JSON of some kB (history of
// every layer included); a layer is at most MaxLayerSize compressed.
const (
	MaxImageLayers  = 256
	MaxImageConfig  = 4 << 20
	MaxLayerSize    = 4 << 30
	maxIndexEntries = 1024
)

// Platform is an index entry's platform.
type Platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant,omitempty"`
}

// IndexEntry is one manifest an image index lists.
type IndexEntry struct {
	Descriptor
	Platform *Platform `json:"platform,omitempty"`
}

// Index is an OCI image index or a Docker manifest list.
type Index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []IndexEntry `json:"manifests"`
}

// Image is a container image's manifest as pulled for one platform.
type Image struct {
	Manifest
	// Digest is the image manifest's digest (not the index's): the same
	// digest always names the same config and layers.
	Digest string
}

// getManifestBytes reads the manifest at reference (a tag or digest) of
// r's repository, accepting the media types accept, and checks a digest
// reference against the bytes. It returns them and the Content-Type.
func (c *Client) getManifestBytes(ctx context.Context, r Ref, reference string, accept ...string) ([]byte, string, error) {
	u := c.RepoURL(r) + "/manifests/" + reference
	resp, err := c.do(ctx, http.MethodGet, u, nil, 0, map[string]string{"Accept": strings.Join(accept, ", ")})
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", statusError(resp, r.String())
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxManifestSize+1))
	if err != nil {
		return nil, "", fmt.Errorf("GET %s: %w", u, err)
	}
	if len(b) > MaxManifestSize {
		return nil, "", fmt.Errorf("%w: %s: manifest of more than %d bytes", update.ErrInvalid, r, MaxManifestSize)
	}
	if strings.HasPrefix(reference, "sha256:") && DigestOf(b) != reference {
		return nil, "", fmt.Errorf("%w: %s: the registry sent a manifest with digest %s for %s", update.ErrInvalid, r, DigestOf(b), reference)
	}
	ct, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
	return b, strings.TrimSpace(ct), nil
}

// GetImage fetches r's image manifest for linux/arch. An index (OCI's or
// Docker's manifest list) is resolved to the entry for linux/arch (for
// arm64, variant v8 or none); a single image manifest must be for that
// platform too, which the caller checks in the config (only it says).
func (c *Client) GetImage(ctx context.Context, r Ref, arch string) (Image, error) {
	b, ct, err := c.getManifestBytes(ctx, r, r.reference(), MediaTypeImageIndex, MediaTypeDockerList, MediaTypeManifest, MediaTypeDockerManifest)
	if err != nil {
		return Image{}, err
	}
	mt := mediaTypeOf(b, ct)
	if mt == MediaTypeImageIndex || mt == MediaTypeDockerList {
		e, err := pickPlatform(b, arch)
		if err != nil {
			return Image{}, fmt.Errorf("%s: %w", r, err)
		}
		if b, ct, err = c.getManifestBytes(ctx, r, e.Digest, MediaTypeManifest, MediaTypeDockerManifest); err != nil {
			return Image{}, err
		}
		if int64(len(b)) != e.Size {
			return Image{}, fmt.Errorf("%w: %s: manifest %s is %d bytes, the index says %d", update.ErrInvalid, r, e.Digest, len(b), e.Size)
		}
		mt = mediaTypeOf(b, ct)
	}
	m, err := parseImageManifest(b, mt)
	if err != nil {
		return Image{}, fmt.Errorf("%s: %w", r, err)
	}
	return Image{Manifest: m, Digest: DigestOf(b)}, nil
}

// mediaTypeOf is the manifest's own mediaType field, else the
// Content-Type the registry sent (OCI makes the field optional).
func mediaTypeOf(b []byte, contentType string) string {
	var v struct {
		MediaType string `json:"mediaType"`
	}
	if json.Unmarshal(b, &v) == nil && v.MediaType != "" {
		return v.MediaType
	}
	return contentType
}

// pickPlatform chooses linux/arch from an index.
func pickPlatform(b []byte, arch string) (IndexEntry, error) {
	var ix Index
	if err := decodeStrict(b, &ix); err != nil {
		return IndexEntry{}, fmt.Errorf("%w: image index: %w", update.ErrInvalid, err)
	}
	if ix.SchemaVersion != 2 || len(ix.Manifests) > maxIndexEntries {
		return IndexEntry{}, fmt.Errorf("%w: image index: schemaVersion %d with %d manifests (want 2, at most %d)", update.ErrInvalid, ix.SchemaVersion, len(ix.Manifests), maxIndexEntries)
	}
	var have []string
	for _, e := range ix.Manifests {
		p := e.Platform
		if p == nil {
			continue
		}
		name := p.OS + "/" + p.Architecture
		if p.Variant != "" {
			name += "/" + p.Variant
		}
		have = append(have, name)
		// arm64 has one variant in practice (v8); an entry naming
		// another is for a CPU the boards are not.
		if p.OS != "linux" || p.Architecture != arch || (arch == "arm64" && p.Variant != "" && p.Variant != "v8") {
			continue
		}
		if e.MediaType != MediaTypeManifest && e.MediaType != MediaTypeDockerManifest {
			return IndexEntry{}, fmt.Errorf("%w: image index: the linux/%s entry is a %q, not an image manifest", update.ErrInvalid, arch, e.MediaType)
		}
		if err := checkDescriptor(e.Descriptor, MaxManifestSize); err != nil {
			return IndexEntry{}, fmt.Errorf("%w: image index: linux/%s: %w", update.ErrInvalid, arch, err)
		}
		return e, nil
	}
	return IndexEntry{}, fmt.Errorf("the image has no linux/%s manifest (it has %s)", arch, strings.Join(have, ", "))
}

func parseImageManifest(b []byte, mt string) (Manifest, error) {
	var m Manifest
	if mt != MediaTypeManifest && mt != MediaTypeDockerManifest {
		return m, fmt.Errorf("%w: %q is not an image manifest or index", update.ErrInvalid, mt)
	}
	if err := decodeStrict(b, &m); err != nil {
		return m, fmt.Errorf("%w: image manifest: %w", update.ErrInvalid, err)
	}
	switch {
	case m.SchemaVersion != 2:
		return m, fmt.Errorf("%w: image manifest: schemaVersion %d, want 2", update.ErrInvalid, m.SchemaVersion)
	case m.Config.MediaType != MediaTypeImageConfig && m.Config.MediaType != MediaTypeDockerConfig:
		return m, fmt.Errorf("%w: image manifest: config %q is not a container image's (an artifact?)", update.ErrInvalid, m.Config.MediaType)
	case len(m.Layers) == 0 || len(m.Layers) > MaxImageLayers:
		return m, fmt.Errorf("%w: image manifest: %d layers (want 1 to %d)", update.ErrInvalid, len(m.Layers), MaxImageLayers)
	}
	if err := checkDescriptor(m.Config, MaxImageConfig); err != nil {
		return m, fmt.Errorf("%w: image manifest: config: %w", update.ErrInvalid, err)
	}
	for i, l := range m.Layers {
		if !slices.Contains(ImageLayerTypes, l.MediaType) {
			return m, fmt.Errorf("%w: image manifest: layer %d has media type %q (want one of %s)", update.ErrInvalid, i, l.MediaType, strings.Join(ImageLayerTypes, ", "))
		}
		if err := checkDescriptor(l, MaxLayerSize); err != nil {
			return m, fmt.Errorf("%w: image manifest: layer %d: %w", update.ErrInvalid, i, err)
		}
	}
	return m, nil
}

func decodeStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return fmt.Errorf("data after the JSON object")
	}
	return nil
}

// CopyBlob streams the blob d of r's repository to w and checks its size
// and digest as it goes: on an error, what w got is not the blob, and
// the caller discards it.
func (c *Client) CopyBlob(ctx context.Context, r Ref, d Descriptor, w io.Writer) error {
	u := c.BlobURL(r, d.Digest)
	resp, err := c.do(ctx, http.MethodGet, u, nil, 0, nil)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return statusError(resp, r.String())
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(resp.Body, d.Size+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if got := Digest(hex.EncodeToString(h.Sum(nil))); n != d.Size || got != d.Digest {
		return fmt.Errorf("%w: %s: blob %s: the registry sent %d bytes with digest %s (want %d bytes)", update.ErrInvalid, r, d.Digest, n, got, d.Size)
	}
	return nil
}
