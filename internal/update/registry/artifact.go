// Package registry stores update bundles (and the channels that point
// nodes at them, channel.go) in an OCI registry (any
// distribution-spec registry: Docker's, Harbor, GitLab's, zot) and
// fetches them back: reference parsing, a small distribution client
// (manifests and blobs, pushes that skip blobs the registry has) and an
// http.RoundTripper that answers Bearer and Basic challenges. Both sides
// link it, the node's update command too: standard library,
// internal/update and internal/atomicfile only.
//
// A bundle (package update's directory) is one OCI artifact:
//
//	OCI image manifest  schemaVersion 2,
//	                    mediaType application/vnd.oci.image.manifest.v1+json,
//	                    artifactType application/vnd.mkimage.update.v1
//	config              manifest.json's exact bytes,
//	                    application/vnd.mkimage.update.manifest.v1+json
//	layer 0             manifest.sig, application/vnd.mkimage.update.signature.v1
//	layers 1..          one per payload, in the manifest's order, media type
//	                    by kind: application/vnd.mkimage.update.root-full.v1,
//	                    ...root-incremental.v1, ...boot.v1
//
// Every layer carries the annotation org.opencontainers.image.title, the
// bundle file name. A payload's digest is "sha256:" and its sha256 in the
// signed manifest, so the same payload in two versions (a kernel that did
// not change) is one blob, pushed once.
//
// The OCI manifest is not signed and only says where blobs are: a reader
// fetches the config and the signature, checks the signature
// (update.Verify) and then fetches payloads by the digests the signed
// manifest gives, never by the OCI manifest's.
package registry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"

	"github.com/mkimage/mkimage/internal/update"
)

// Media types of the artifact.
const (
	MediaTypeManifest  = "application/vnd.oci.image.manifest.v1+json"
	ArtifactType       = "application/vnd.mkimage.update.v1"
	MediaTypeConfig    = "application/vnd.mkimage.update.manifest.v1+json"
	MediaTypeSignature = "application/vnd.mkimage.update.signature.v1"
	// AnnotationTitle names a layer's file (the OCI standard annotation).
	AnnotationTitle = "org.opencontainers.image.title"
)

// LayerMediaType is the media type of a payload of kind (update.Kind*).
func LayerMediaType(kind string) string {
	return "application/vnd.mkimage.update." + kind + ".v1"
}

// MaxManifestSize bounds an OCI manifest read from a registry (64
// payloads' descriptors are a few kB; the registries' own limit is 4 MiB).
const MaxManifestSize = 4 << 20

// Descriptor points at a blob.
type Descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Manifest is an OCI image manifest.
type Manifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType,omitempty"`
	Config        Descriptor        `json:"config"`
	Layers        []Descriptor      `json:"layers"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

var blobDigestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// Digest is the blob digest of content whose sha256 is sum (hex).
func Digest(sum string) string { return "sha256:" + sum }

// DigestOf is b's blob digest.
func DigestOf(b []byte) string {
	s := sha256.Sum256(b)
	return Digest(hex.EncodeToString(s[:]))
}

// ParseManifest reads an OCI manifest of an update bundle: an image
// manifest of ArtifactType whose descriptors are sha256 digests with
// sizes in range, its config of MediaTypeConfig, and a signature layer.
// Anything else (an image, an index, hostile JSON) is refused: the
// caller asked for an update bundle.
func ParseManifest(b []byte) (Manifest, error) {
	var m Manifest
	if len(b) > MaxManifestSize {
		return m, fmt.Errorf("%w: OCI manifest of %d bytes, more than %d", update.ErrInvalid, len(b), MaxManifestSize)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&m); err != nil {
		return m, fmt.Errorf("%w: OCI manifest: %w", update.ErrInvalid, err)
	}
	if d.More() {
		return m, fmt.Errorf("%w: OCI manifest: data after the JSON object", update.ErrInvalid)
	}
	switch {
	case m.SchemaVersion != 2:
		return m, fmt.Errorf("%w: OCI manifest: schemaVersion %d, want 2", update.ErrInvalid, m.SchemaVersion)
	case m.MediaType != MediaTypeManifest:
		return m, fmt.Errorf("%w: OCI manifest: mediaType %q, want %s", update.ErrInvalid, m.MediaType, MediaTypeManifest)
	case m.ArtifactType != ArtifactType && m.Config.MediaType != MediaTypeConfig:
		return m, fmt.Errorf("%w: not an update bundle (artifactType %q, config %q; want %s): the reference names something else", update.ErrInvalid, m.ArtifactType, m.Config.MediaType, ArtifactType)
	case m.Config.MediaType != MediaTypeConfig:
		return m, fmt.Errorf("%w: OCI manifest: config mediaType %q, want %s", update.ErrInvalid, m.Config.MediaType, MediaTypeConfig)
	case len(m.Layers) > update.MaxPayloads+1:
		return m, fmt.Errorf("%w: OCI manifest: %d layers, at most %d", update.ErrInvalid, len(m.Layers), update.MaxPayloads+1)
	}
	if err := checkDescriptor(m.Config, update.MaxManifestSize); err != nil {
		return m, fmt.Errorf("%w: OCI manifest: config: %w", update.ErrInvalid, err)
	}
	for i, l := range m.Layers {
		if err := checkDescriptor(l, update.MaxPayloadSize); err != nil {
			return m, fmt.Errorf("%w: OCI manifest: layer %d: %w", update.ErrInvalid, i, err)
		}
	}
	if _, ok := m.Layer(update.SignatureFile); !ok {
		return m, fmt.Errorf("%w: OCI manifest: no %s layer", update.ErrInvalid, update.SignatureFile)
	}
	return m, nil
}

func checkDescriptor(d Descriptor, max int64) error {
	if !blobDigestRE.MatchString(d.Digest) {
		return fmt.Errorf("digest %q is not sha256: and 64 lowercase hex digits", d.Digest)
	}
	if d.Size < 0 || d.Size > max {
		return fmt.Errorf("size %d out of range 0..%d", d.Size, max)
	}
	return nil
}

// Layer returns the layer titled name.
func (m Manifest) Layer(name string) (Descriptor, bool) {
	for _, l := range m.Layers {
		if l.Annotations[AnnotationTitle] == name {
			return l, true
		}
	}
	return Descriptor{}, false
}

// BundleManifest is the OCI manifest of the bundle whose manifest.json
// is mb, signature sig and parsed manifest m.
func BundleManifest(mb, sig []byte, m update.Manifest) Manifest {
	title := func(name string) map[string]string { return map[string]string{AnnotationTitle: name} }
	om := Manifest{
		SchemaVersion: 2, MediaType: MediaTypeManifest, ArtifactType: ArtifactType,
		Config: Descriptor{MediaType: MediaTypeConfig, Digest: DigestOf(mb), Size: int64(len(mb))},
		Layers: []Descriptor{{MediaType: MediaTypeSignature, Digest: DigestOf(sig), Size: int64(len(sig)), Annotations: title(update.SignatureFile)}},
	}
	for _, p := range m.Payloads {
		om.Layers = append(om.Layers, Descriptor{MediaType: LayerMediaType(p.Kind), Digest: Digest(p.SHA256), Size: p.Size, Annotations: title(p.Name)})
	}
	return om
}

// Marshal is the manifest's bytes as pushed.
func (m Manifest) Marshal() ([]byte, error) {
	return json.MarshalIndent(m, "", "  ")
}
