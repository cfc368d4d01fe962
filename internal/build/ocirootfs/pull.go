// Package ocirootfs makes LXC containers' roots from container images
// in OCI registries: it pulls an image for linux/arm64 with the project's
// registry client (blobs cached by digest), unpacks its layers in order
// into an fstree.Tree (OCI whiteouts applied, by rootfs.AddTar), and
// writes the container's LXC config from the image config. The builder
// places both under var/lib/lxc/NAME of the root it builds.
package ocirootfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/mkimage/mkimage/internal/cachedir"
	"github.com/mkimage/mkimage/internal/update/registry"
)

// CacheKind is the cache directory (under cachedir.Root) of pulled blobs.
const CacheKind = "oci/blobs"

// Puller pulls images.
type Puller struct {
	Client *registry.Client
	// Cache holds verified blobs, one file per digest; "" is
	// cachedir.Dir(CacheKind).
	Cache string
	// Arch is the platform's architecture ("arm64" when empty).
	Arch string
	// Log, when set, reports downloads.
	Log func(format string, a ...any)
}

// Image is a pulled image: its manifest's digest, config and layers in
// the cache.
type Image struct {
	Ref    registry.Ref
	Digest string // the platform's image manifest digest
	Config ImageConfig
	// Created is the image's creation time (1970 when it has none): the
	// time of what the builder makes for the container besides layers.
	Created time.Time
	Layers  []string // cached layer files, lowest first
	Sizes   []int64  // compressed sizes, as the manifest gives them
}

// ImageConfig is what mkimage reads of an OCI image config.
type ImageConfig struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Created      string `json:"created"`
	Config       struct {
		User       string   `json:"User"`
		Env        []string `json:"Env"`
		Entrypoint []string `json:"Entrypoint"`
		Cmd        []string `json:"Cmd"`
		WorkingDir string   `json:"WorkingDir"`
	} `json:"config"`
}

func (p *Puller) arch() string {
	if p.Arch == "" {
		return "arm64"
	}
	return p.Arch
}

func (p *Puller) cache() string {
	if p.Cache == "" {
		return cachedir.Dir(CacheKind)
	}
	return p.Cache
}

func (p *Puller) logf(format string, a ...any) {
	if p.Log != nil {
		p.Log(format, a...)
	}
}

// Pull fetches ref's manifest for linux/Arch and makes sure its config
// and layers are in the cache, downloading only those that are not.
func (p *Puller) Pull(ctx context.Context, ref registry.Ref) (*Image, error) {
	m, err := p.Client.GetImage(ctx, ref, p.arch())
	if err != nil {
		return nil, err
	}
	img := &Image{Ref: ref, Digest: m.Digest}
	cfgPath, err := p.blob(ctx, ref, m.Config)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, err
	}
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&img.Config); err != nil {
		return nil, fmt.Errorf("%s: image config %s: %w", ref, m.Config.Digest, err)
	}
	c := img.Config
	// A single-platform manifest says its platform only here.
	if c.OS != "linux" || c.Architecture != p.arch() {
		return nil, fmt.Errorf("%s: the image is for %s/%s, not linux/%s", ref, c.OS, c.Architecture, p.arch())
	}
	// Without a creation time, 1970: still the same for the same image.
	img.Created = time.Unix(0, 0).UTC()
	if c.Created != "" {
		if img.Created, err = time.Parse(time.RFC3339Nano, c.Created); err != nil {
			return nil, fmt.Errorf("%s: image config: created %q: %w", ref, c.Created, err)
		}
	}
	for i, l := range m.Layers {
		f, err := p.blob(ctx, ref, l)
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		img.Layers = append(img.Layers, f)
		img.Sizes = append(img.Sizes, l.Size)
	}
	return img, nil
}

// blob returns the cache file of d, downloading it when the cache has
// none. A download goes to a temporary file renamed into place once its
// digest checked out, so a cut download leaves nothing taken for a blob.
// A cached file is checked again: a damaged cache is downloaded anew.
func (p *Puller) blob(ctx context.Context, ref registry.Ref, d registry.Descriptor) (string, error) {
	dir := p.cache()
	final := filepath.Join(dir, "sha256-"+registry.SumOf(d.Digest))
	switch err := checkFile(final, d); {
	case err == nil:
		cachedir.Touch(final)
		return final, nil
	case !errors.Is(err, fs.ErrNotExist):
		p.logf("cached blob %s: %v; downloading it again", d.Digest, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	p.logf("pulling %s blob %s (%d bytes)", ref, d.Digest, d.Size)
	if err := p.Client.CopyBlob(ctx, ref, d, f); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(f.Name(), final); err != nil {
		return "", err
	}
	return final, nil
}

// checkFile checks that the file at p has d's size and digest.
func checkFile(p string, d registry.Descriptor) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	if got := registry.Digest(hex.EncodeToString(h.Sum(nil))); n != d.Size || got != d.Digest {
		return fmt.Errorf("%d bytes with digest %s, want %d bytes with %s", n, got, d.Size, d.Digest)
	}
	return nil
}
