package netfetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/mkimage/mkimage/internal/update"
)

// KeysPath is where the builder bakes the keys of a signed netboot tree
// into the initramfs (mkimage netboot --update-key). When it exists, the
// node takes only images its signed images.json lists.
const KeysPath = "/etc/nodeinit/netboot-keys"

// LoadKeys reads the baked netboot keys: none (nil) when the file does
// not exist, an error when it exists but holds no valid key (a node
// built to require signatures never falls back to the unsigned sums).
func LoadKeys(p string) ([]update.PublicKey, error) {
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	keys, err := update.ParsePublicKeys(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return keys, nil
}

// BakedKeys loads the keys at KeysPath and says on the console what the
// node will take.
func BakedKeys(logf func(string, ...any)) ([]update.PublicKey, error) {
	keys, err := LoadKeys(KeysPath)
	switch {
	case err != nil:
		return nil, err
	case len(keys) == 0:
		logf("netboot: no netboot keys in the initramfs: the image is checked against the sha256 on the kernel command line only (unsigned)")
	default:
		logf("netboot: %d netboot keys in the initramfs: only images the tree's signed %s lists are taken", len(keys), update.NetbootFile)
	}
	return keys, nil
}

// maxSignature bounds images.sig (base64 of 64 bytes and a newline).
const maxSignature = 1 << 10

// openSigned reads images.json and images.sig beside the image at u,
// checks the signature with keys before it parses anything, then fetches
// the image's map and checks its size and sha256 against the manifest
// before parsing it. The image's own sha256 (checked after writing, as
// the map's per-range sums are before) is the manifest's.
func (f *Fetcher) openSigned(ctx context.Context, u string, keys []update.PublicKey) (*Source, error) {
	base := u[:strings.LastIndex(u, "/")+1]
	doc, err := f.Small(ctx, base+update.NetbootFile, update.MaxManifestSize)
	if err != nil {
		return nil, fmt.Errorf("the signed netboot manifest: %w", err)
	}
	sig, err := f.Small(ctx, base+update.NetbootSignature, maxSignature)
	if err != nil {
		return nil, fmt.Errorf("the netboot manifest's signature: %w", err)
	}
	man, by, err := update.VerifyNetboot(doc, sig, keys)
	if err != nil {
		return nil, fmt.Errorf("%s: %w; nothing fetched from this tree is used", base, err)
	}
	f.logf("%s%s: signature verified (key %s); board %s", base, update.NetbootFile, by, man.Board)
	name := path.Base(u)
	img, err := man.File(name)
	if err != nil {
		return nil, err
	}
	mf, err := man.File(name + ".bmap")
	if err != nil {
		return nil, err
	}
	// One byte more than the manifest says, so a longer map is named below.
	data, err := f.Small(ctx, u+".bmap", mf.Size+1)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); int64(len(data)) != mf.Size || got != mf.SHA256 {
		return nil, fmt.Errorf("%w: %s.bmap: %d bytes, sha256 %s; %s says %d bytes, sha256 %s", update.ErrInvalidNetboot, u, len(data), got, update.NetbootFile, mf.Size, mf.SHA256)
	}
	m, err := parseMap(u, data)
	if err != nil {
		return nil, err
	}
	if m.ImageSize != img.Size {
		return nil, fmt.Errorf("%w: %s.bmap maps %d bytes, %s says %s is %d", update.ErrInvalidNetboot, u, m.ImageSize, update.NetbootFile, name, img.Size)
	}
	return &Source{URL: u, SHA256: img.SHA256, Map: m, f: f}, nil
}
