package apply

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/mkimage/mkimage/internal/node/netfetch"
	"github.com/mkimage/mkimage/internal/update"
	"github.com/mkimage/mkimage/internal/update/registry"
)

// source is where a bundle's files come from: what differs between a
// bundle directory over HTTP and a bundle in a registry. The rest of an
// apply (what to download, resuming, checking) is the same for both.
type source interface {
	// manifest fetches manifest.json and manifest.sig and checks the
	// signature (update.Verify), returning manifest.json's bytes.
	manifest(ctx context.Context, keys []update.PublicKey) ([]byte, update.Manifest, error)
	// url is where payload p of the verified manifest is downloaded.
	url(p update.Payload) string
	// client makes the requests (a registry's answers its challenges).
	client() *http.Client
}

func (o *Options) source() (source, error) {
	ref, plain, isOCI, err := registry.ParseURL(o.Source)
	if err != nil {
		return nil, err
	}
	if isOCI {
		var base http.RoundTripper
		if o.Fetcher.Client != nil {
			base = o.Fetcher.Client.Transport
		}
		c := registry.New(o.Credentials, base, plain)
		return &registrySource{c: c, ref: ref}, nil
	}
	if !strings.HasPrefix(o.Source, "http://") && !strings.HasPrefix(o.Source, "https://") {
		return nil, fmt.Errorf("source %q: want the http(s):// URL of a bundle directory, or %sHOST/REPO:TAG (%s... for a registry without TLS)", o.Source, registry.Scheme, registry.PlainScheme)
	}
	return &dirSource{base: strings.TrimSuffix(o.Source, "/") + "/", f: o.Fetcher}, nil
}

// dirSource is a bundle directory: each file at base+name.
type dirSource struct {
	base string
	f    *netfetch.Fetcher
}

func (d *dirSource) client() *http.Client { return d.f.Client }

func (d *dirSource) url(p update.Payload) string { return d.base + p.Name }

func (d *dirSource) manifest(ctx context.Context, keys []update.PublicKey) ([]byte, update.Manifest, error) {
	mb, err := d.small(ctx, update.ManifestFile)
	if err != nil {
		return nil, update.Manifest{}, err
	}
	sig, err := d.small(ctx, update.SignatureFile)
	if err != nil {
		return nil, update.Manifest{}, err
	}
	m, err := update.Verify(mb, sig, keys)
	if err != nil {
		return nil, update.Manifest{}, fmt.Errorf("%s: %w", d.base, err)
	}
	return mb, m, nil
}

// registrySource is a bundle in an OCI registry: each payload is the
// blob of the digest the signed manifest gives it.
type registrySource struct {
	c   *registry.Client
	ref registry.Ref
	b   *registry.Bundle
}

func (r *registrySource) client() *http.Client { return r.c.HTTP }

func (r *registrySource) url(p update.Payload) string { return r.c.PayloadURL(r.b, p) }

func (r *registrySource) manifest(ctx context.Context, keys []update.PublicKey) ([]byte, update.Manifest, error) {
	b, err := r.c.Open(ctx, r.ref, keys)
	if err != nil {
		return nil, update.Manifest{}, err
	}
	r.b = b
	return b.ManifestJSON, b.Manifest, nil
}

// small fetches the bundle's file name, at most update.MaxManifestSize
// bytes of it.
func (d *dirSource) small(ctx context.Context, name string) ([]byte, error) {
	b, err := d.f.Small(ctx, d.base+name, update.MaxManifestSize)
	switch {
	case errors.Is(err, netfetch.ErrTooBig):
		return nil, fmt.Errorf("%w: %w", update.ErrInvalid, err)
	case err != nil:
		return nil, fmt.Errorf("%w (is %s a bundle directory, and its server reachable?)", err, d.base)
	}
	return b, nil
}
