// Package bmaptest makes sparse test images with known data extents for
// the bmap and flash tests.
package bmaptest

import (
	"math/rand/v2"
	"os"
	"testing"

	"github.com/mkimage/mkimage/internal/bmap"
)

// Extents is a layout like a small SD image: an MBR sector and a bootloader
// at odd offsets, scattered filesystem metadata and file data, and the last
// bytes of the image.
func Extents(size int64) []bmap.Extent {
	return []bmap.Extent{
		{Off: 0, Len: 440},                        // boot code (the partition table follows)
		{Off: 446, Len: 64},                       // partition table
		{Off: 510, Len: 2},                        // signature
		{Off: 512, Len: 300 << 10},                // bootloader from sector 1
		{Off: 4 << 20, Len: 64 << 10},             // FAT reserved area + FATs
		{Off: 5<<20 + 100, Len: 1<<20 + 7},        // a file, unaligned
		{Off: 8 << 20, Len: 4096},                 // single block
		{Off: 8<<20 + 4096, Len: 8192},            // adjacent: merges with the previous
		{Off: 20 << 20, Len: 2 << 20},             // btrfs chunk
		{Off: size/2 - 3, Len: 10},                // straddles a block boundary
		{Off: size - 4096 - 512, Len: 4096 + 512}, // the tail
	}
}

// Image writes a sparse file of size bytes whose extents hold random,
// non-zero bytes (everything else is a hole), and returns the extents.
func Image(t testing.TB, path string, size int64, extents []bmap.Extent) []bmap.Extent {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(size), 8))
	for _, e := range extents {
		b := make([]byte, e.Len)
		for i := range b {
			b[i] = byte(rng.IntN(255) + 1)
		}
		if _, err := f.WriteAt(b, e.Off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return extents
}
