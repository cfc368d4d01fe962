package bmap_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"testing"

	"github.com/mkimage/mkimage/internal/bmap"
)

// FuzzParse parses bmap files (the flasher and netinstall read them from
// beside an image or off the network). Inputs are tried as they are and
// with their BmapFileChecksum made right, so mutations get past the
// checksum to the ranges. What Parse accepts must stay inside the image
// and survive Marshal and Parse unchanged.
func FuzzParse(f *testing.F) {
	m := &bmap.Map{ImageSize: 10*bmap.BlockSize + 100, BlockSize: bmap.BlockSize, Ranges: []bmap.Range{
		{First: 0, Last: 0, Sum: hex.EncodeToString(make([]byte, 32))},
		{First: 3, Last: 10, Sum: hex.EncodeToString(bytes.Repeat([]byte{1}, 32))},
	}}
	b, err := m.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	// bmaptool's own output for a small sparse file, when installed.
	if _, err := exec.LookPath("bmaptool"); err == nil {
		dir := f.TempDir()
		img := filepath.Join(dir, "x.img")
		if err := os.WriteFile(img, append(make([]byte, 3*bmap.BlockSize), "data"...), 0o644); err == nil {
			if exec.Command("bmaptool", "create", "-o", img+".bmap", img).Run() == nil {
				if b, err := os.ReadFile(img + ".bmap"); err == nil {
					f.Add(b)
				}
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		check(t, b)
		if fixed := fixSum(b); fixed != nil {
			check(t, fixed)
		}
	})
}

func check(t *testing.T, b []byte) {
	m, err := bmap.Parse(b)
	if err != nil {
		return
	}
	var n int64
	for _, r := range m.Ranges {
		off, end := m.Bytes(r)
		if off < 0 || end > m.ImageSize || off >= end {
			t.Fatalf("range %d-%d is bytes %d..%d of a %d-byte image", r.First, r.Last, off, end, m.ImageSize)
		}
		n += end - off
	}
	if n != m.MappedBytes() || m.MappedBytes() > m.ImageSize {
		t.Fatalf("mapped %d bytes (%d) of %d", m.MappedBytes(), n, m.ImageSize)
	}
	out, err := m.Marshal()
	if err != nil {
		t.Fatalf("Marshal of a parsed map: %v", err)
	}
	back, err := bmap.Parse(out)
	if err != nil {
		t.Fatalf("Parse of Marshal's output: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(back, m) {
		t.Fatalf("round trip changed the map:\n%+v\n%+v", m, back)
	}
}

var sumField = regexp.MustCompile(`<BmapFileChecksum>\s*([0-9a-fA-F]{64})\s*</BmapFileChecksum>`)

// fixSum returns b with a sha256 BmapFileChecksum that matches, or nil.
func fixSum(b []byte) []byte {
	loc := sumField.FindSubmatchIndex(b)
	if loc == nil {
		return nil
	}
	out := bytes.Clone(b)
	copy(out[loc[2]:loc[3]], bytes.Repeat([]byte("0"), 64))
	sum := sha256.Sum256(out)
	copy(out[loc[2]:loc[3]], hex.EncodeToString(sum[:]))
	return out
}
