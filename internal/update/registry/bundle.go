package registry

import (
	"context"
	"fmt"

	"github.com/mkimage/mkimage/internal/update"
)

// maxSignatureSize bounds manifest.sig (base64 of 64 bytes and a newline).
const maxSignatureSize = 1024

// Bundle is an update bundle in a registry whose signature was checked:
// its payloads are read by the digests Manifest gives.
type Bundle struct {
	Ref          Ref
	OCI          Manifest        // where the blobs are (unsigned)
	ManifestJSON []byte          // manifest.json's bytes, as signed
	Signature    []byte          // manifest.sig
	Manifest     update.Manifest // verified
}

// Open fetches the bundle at r and checks it as a node would before any
// payload is fetched: the OCI manifest's form, then manifest.json (its
// config) signed by one of keys (update.Verify). Nothing else is
// trusted: each payload's size and sha256 come from the signed manifest.
func (c *Client) Open(ctx context.Context, r Ref, keys []update.PublicKey) (*Bundle, error) {
	om, _, err := c.GetManifest(ctx, r)
	if err != nil {
		return nil, err
	}
	sigDesc, _ := om.Layer(update.SignatureFile) // ParseManifest made sure
	sig, err := c.GetBlob(ctx, r, sigDesc, maxSignatureSize)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", r, update.SignatureFile, err)
	}
	mb, err := c.GetBlob(ctx, r, om.Config, update.MaxManifestSize)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", r, update.ManifestFile, err)
	}
	m, err := update.Verify(mb, sig, keys)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r, err)
	}
	return &Bundle{Ref: r, OCI: om, ManifestJSON: mb, Signature: sig, Manifest: m}, nil
}

// PayloadURL is where payload p is read: the blob of the digest the
// signed manifest gives it.
func (c *Client) PayloadURL(b *Bundle, p update.Payload) string {
	return c.BlobURL(b.Ref, Digest(p.SHA256))
}
