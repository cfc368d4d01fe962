package bundle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/mkimage/mkimage/internal/atomicfile"
	"github.com/mkimage/mkimage/internal/build/progress"
	"github.com/mkimage/mkimage/internal/node/netfetch"
	"github.com/mkimage/mkimage/internal/update"
	"github.com/mkimage/mkimage/internal/update/registry"
)

// bigBlob is the size from which a push or pull shows its progress.
const bigBlob = 8 << 20

// Pushed says what Push did with one blob.
type Pushed struct {
	Name   string // bundle file name
	Digest string
	Size   int64
	New    bool // uploaded (false: the registry had it)
}

// Push checks the bundle in dir (Verify: signed by one of keys, every
// payload's size and sha256) and stores it at ref as the OCI artifact
// package registry describes. Blobs the repository holds already (a
// payload an earlier version shares, a parent pushed before) are not
// uploaded again. log (nil: silent) is where progress is shown.
func Push(ctx context.Context, c *registry.Client, dir string, ref registry.Ref, keys []update.PublicKey, log io.Writer) (string, []Pushed, error) {
	m, err := Verify(dir, keys)
	if err != nil {
		return "", nil, fmt.Errorf("checking the bundle before pushing it: %w", err)
	}
	mb, err := os.ReadFile(filepath.Join(dir, update.ManifestFile))
	if err != nil {
		return "", nil, err
	}
	sig, err := os.ReadFile(filepath.Join(dir, update.SignatureFile))
	if err != nil {
		return "", nil, err
	}
	om := registry.BundleManifest(mb, sig, m)
	// The config (manifest.json) first: it is what the OCI manifest and
	// the signature layer are about.
	blobs := append([]registry.Descriptor{om.Config}, om.Layers...)
	var done []Pushed
	for i, d := range blobs {
		name := d.Annotations[registry.AnnotationTitle]
		if i == 0 {
			name = update.ManifestFile
		}
		path := filepath.Join(dir, name)
		var meter *progress.Meter
		var latest progress.Latest
		open := func() (io.ReadCloser, error) {
			f, err := os.Open(path)
			if err != nil {
				return nil, err
			}
			if d.Size < bigBlob {
				return f, nil
			}
			if meter == nil {
				meter = progress.Start(log, progress.Options{Label: "mkimage: pushing " + name, Watch: latest.Report})
			}
			return readCloser{progress.Reading(f, d.Size, latest.SetBytes), f}, nil
		}
		uploaded, err := c.PushBlob(ctx, ref, d, open)
		if meter != nil {
			meter.Stop()
		}
		if err != nil {
			return "", done, fmt.Errorf("pushing %s of bundle %s to %s: %w", name, dir, ref, err)
		}
		done = append(done, Pushed{Name: name, Digest: d.Digest, Size: d.Size, New: uploaded})
	}
	b, err := om.Marshal()
	if err != nil {
		return "", done, err
	}
	digest, err := c.PutManifest(ctx, ref, b)
	if err != nil {
		return "", done, err
	}
	return digest, done, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// Pull fetches the bundle at ref into dir, all or nothing: its signature
// is checked (one of keys) before any payload is fetched, payloads are
// downloaded beside dir into .DIR.pull (resumed by the next Pull after a
// failure) and checked against the signed manifest, and dir takes them
// whole, replacing an earlier bundle there (atomicfile.ReplaceDir).
func Pull(ctx context.Context, c *registry.Client, ref registry.Ref, dir string, keys []update.PublicKey, f *netfetch.Fetcher) (update.Manifest, error) {
	b, err := c.Open(ctx, ref, keys)
	if err != nil {
		return update.Manifest{}, err
	}
	m := b.Manifest
	staging := filepath.Join(filepath.Dir(dir), "."+filepath.Base(dir)+".pull")
	if err := os.MkdirAll(staging, 0o755); err != nil {
		return m, err
	}
	if f == nil {
		f = &netfetch.Fetcher{}
	}
	fetcher := *f
	fetcher.Client = c.HTTP
	for _, p := range m.Payloads {
		err := fetcher.Download(ctx, c.PayloadURL(b, p), filepath.Join(staging, p.Name), netfetch.Want{Size: p.Size, SHA256: p.SHA256})
		if errors.Is(err, netfetch.ErrMismatch) {
			return m, fmt.Errorf("%w: %s of %s is not what the signed manifest says (the registry's copy is damaged or was changed: push the bundle again): %w", update.ErrInvalid, p.Name, ref, err)
		}
		if err != nil {
			return m, fmt.Errorf("pulling %s of %s: %w (run again to resume)", p.Name, ref, err)
		}
	}
	err = atomicfile.ReplaceDir(dir, "an update bundle", update.ManifestFile, func(tmp string) error {
		for _, p := range m.Payloads {
			if err := os.Rename(filepath.Join(staging, p.Name), filepath.Join(tmp, p.Name)); err != nil {
				return err
			}
		}
		if err := atomicfile.WriteFile(filepath.Join(tmp, update.SignatureFile), b.Signature, 0o644); err != nil {
			return err
		}
		return atomicfile.WriteFile(filepath.Join(tmp, update.ManifestFile), b.ManifestJSON, 0o644)
	})
	if err != nil {
		return m, fmt.Errorf("pulling %s into %s: %w", ref, dir, err)
	}
	return m, os.RemoveAll(staging)
}
