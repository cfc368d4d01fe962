package netfetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/node/netfetch/fetchtest"
	"github.com/mkimage/mkimage/internal/update"
	"github.com/mkimage/mkimage/internal/update/updatetest"
)

// signTree writes images.json and images.sig for node.img and its map in
// dir, signed by k.
func signTree(t *testing.T, dir string, k update.PrivateKey) {
	t.Helper()
	m := update.NetbootManifest{Format: update.FormatVersion, Board: "qemu-virt"}
	for _, n := range []string{"node.img", "node.img.bmap"} {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		m.Files = append(m.Files, update.NetbootItem{Name: n, Size: int64(len(b)), SHA256: hexSum(b)})
	}
	doc, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, update.NetbootFile), doc, 0o644)
	os.WriteFile(filepath.Join(dir, update.NetbootSignature), update.Sign(doc, k), 0o644)
}

// TestOpenSigned: with keys, Open takes the image's sums from the signed
// images.json (the command line's is not used) and refuses, naming what
// differs, a tree signed by another key, an image it does not list, and
// a map that is not the one it lists.
func TestOpenSigned(t *testing.T) {
	dir, img, _ := image(t)
	k := updatetest.Key(1)
	signTree(t, dir, k)
	ap := fetchtest.Serve(t, dir)
	keys := []update.PublicKey{k.Public()}
	open := func(name string, keys []update.PublicKey) (*Source, error) {
		return Open(context.Background(), Image{URL: fetchtest.URL(ap, name), SHA256: "not used", Server: ap.Addr(), Keys: keys}, &Fetcher{Retries: -1})
	}
	src, err := open("node.img", keys)
	if err != nil {
		t.Fatal(err)
	}
	dev := &memDev{b: make([]byte, len(img))}
	if err := src.WriteTo(context.Background(), dev, nil); err != nil || !bytes.Equal(dev.b, img) {
		t.Fatalf("write: %v", err)
	}

	mapPath := filepath.Join(dir, "node.img.bmap")
	goodMap, _ := os.ReadFile(mapPath)
	badMap := bytes.Replace(goodMap, []byte("<ImageSize>"), []byte("<ImageSize> "), 1)
	for _, c := range []struct {
		name   string
		change func()
		image  string
		keys   []update.PublicKey
		want   string
	}{
		{"other key", func() {}, "node.img", []update.PublicKey{updatetest.Key(2).Public()}, `images.sig is not a signature of images.json by any of the 1 trusted keys ("key 2")`},
		{"not listed", func() { os.WriteFile(filepath.Join(dir, "other.img"), img, 0o644) }, "other.img", keys, "images.json does not list other.img"},
		{"map changed", func() { os.WriteFile(mapPath, badMap, 0o644) }, "node.img", keys,
			fmt.Sprintf("node.img.bmap: %d bytes, sha256 %s; images.json says %d bytes, sha256 %s", len(badMap), hexSum(badMap), len(goodMap), hexSum(goodMap))},
	} {
		t.Run(c.name, func(t *testing.T) {
			defer os.WriteFile(mapPath, goodMap, 0o644)
			c.change()
			_, err := open(c.image, c.keys)
			if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, update.ErrInvalidNetboot) {
				t.Errorf("error %v, want %q", err, c.want)
			}
		})
	}
}

// TestBadRangeNotWritten: a range whose bytes differ from the map is
// refused before any of it reaches the device.
func TestBadRangeNotWritten(t *testing.T) {
	dir, img, sum := image(t)
	bad := bytes.Clone(img)
	bad[5] ^= 1
	os.WriteFile(filepath.Join(dir, "node.img"), bad, 0o644)
	ap := fetchtest.Serve(t, dir)
	u, _ := ResolveURL(fetchtest.URL(ap, "node.img"), ap.Addr())
	dev := &memDev{b: bytes.Repeat([]byte{0xa5}, len(img))}
	_, err := (&Fetcher{}).Fetch(context.Background(), u, sum, dev, nil)
	if err == nil || !strings.Contains(err.Error(), "not written") {
		t.Fatalf("error %v", err)
	}
	if !bytes.Equal(dev.b, bytes.Repeat([]byte{0xa5}, len(img))) {
		t.Error("bytes of a refused range reached the device")
	}
}

func hexSum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
