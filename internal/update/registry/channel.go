package registry

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/mkimage/mkimage/internal/update"
)

// A channel file (update.SignChannel's: the document and its signature)
// is one OCI artifact, under a tag that mkimage fleet rollout moves:
//
//	OCI image manifest  artifactType application/vnd.mkimage.channel.v1
//	config              the channel file's exact bytes,
//	                    application/vnd.mkimage.channel.v1+json
//	layer 0             the same blob, titled "channel"
//
// (the layer because registries of distribution 2.x refuse an image
// manifest without one). As with a bundle, the OCI manifest is not
// signed: a reader checks the channel file's own signature
// (update.VerifyChannel) before it acts on it.
const (
	ChannelArtifactType = "application/vnd.mkimage.channel.v1"
	MediaTypeChannel    = "application/vnd.mkimage.channel.v1+json"
)

// URL schemes of a registry reference where a URL is expected (an
// update source, a channel): oci:// is spoken to over HTTPS unless the
// registry is on loopback, oci+http:// over plain HTTP wherever it is (a
// lab registry without TLS; the signatures still protect the node).
const (
	Scheme      = "oci://"
	PlainScheme = "oci+http://"
)

// ParseURL reads oci://REF or oci+http://REF. isOCI is false (and the
// rest zero) for anything else, which the caller reads its own way.
func ParseURL(s string) (r Ref, plainHTTP, isOCI bool, err error) {
	rest, ok := strings.CutPrefix(s, Scheme)
	if !ok {
		rest, ok = strings.CutPrefix(s, PlainScheme)
		plainHTTP = ok
	}
	if !ok {
		return Ref{}, false, false, nil
	}
	r, err = ParseRef(rest)
	return r, plainHTTP, true, err
}

// ChannelManifest is the OCI manifest that stores channel file file.
func ChannelManifest(file []byte) Manifest {
	d := Descriptor{MediaType: MediaTypeChannel, Digest: DigestOf(file), Size: int64(len(file))}
	l := d
	l.Annotations = map[string]string{AnnotationTitle: "channel"}
	return Manifest{SchemaVersion: 2, MediaType: MediaTypeManifest, ArtifactType: ChannelArtifactType, Config: d, Layers: []Descriptor{l}}
}

// parseChannelManifest accepts only a channel's OCI manifest: its config
// a channel file of at most update.MaxChannelSize bytes.
func parseChannelManifest(b []byte) (Manifest, error) {
	var m Manifest
	if err := decodeStrict(b, &m); err != nil {
		return m, fmt.Errorf("%w: OCI manifest: %w", update.ErrInvalid, err)
	}
	switch {
	case m.SchemaVersion != 2 || m.MediaType != MediaTypeManifest:
		return m, fmt.Errorf("%w: OCI manifest: schemaVersion %d, mediaType %q", update.ErrInvalid, m.SchemaVersion, m.MediaType)
	case m.ArtifactType != ChannelArtifactType || m.Config.MediaType != MediaTypeChannel:
		return m, fmt.Errorf("%w: not a channel (artifactType %q, config %q; want %s): the reference names something else", update.ErrInvalid, m.ArtifactType, m.Config.MediaType, ChannelArtifactType)
	}
	if err := checkDescriptor(m.Config, update.MaxChannelSize); err != nil {
		return m, fmt.Errorf("%w: channel: %w", update.ErrInvalid, err)
	}
	return m, nil
}

// PushChannel stores channel file file at r (a tag): its blob, then the
// manifest, so the tag moves to a channel whose blob is there.
func (c *Client) PushChannel(ctx context.Context, r Ref, file []byte) error {
	if r.Tag == "" {
		return fmt.Errorf("%s: a channel is published under a tag", r)
	}
	m := ChannelManifest(file)
	if _, err := c.PushBlob(ctx, r, m.Config, func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(file)), nil }); err != nil {
		return fmt.Errorf("%s: channel: %w", r, err)
	}
	b, err := m.Marshal()
	if err != nil {
		return err
	}
	_, err = c.PutManifest(ctx, r, b)
	return err
}

// GetChannel reads the channel file at r, checking the OCI manifest's
// form and the blob's size and digest; the caller checks its signature.
// An error wraps ErrNotFound when r names nothing.
func (c *Client) GetChannel(ctx context.Context, r Ref) ([]byte, error) {
	b, _, err := c.getManifestBytes(ctx, r, r.reference(), MediaTypeManifest)
	if err != nil {
		return nil, err
	}
	m, err := parseChannelManifest(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r, err)
	}
	file, err := c.GetBlob(ctx, r, m.Config, update.MaxChannelSize)
	if err != nil {
		return nil, fmt.Errorf("%s: channel: %w", r, err)
	}
	return file, nil
}
