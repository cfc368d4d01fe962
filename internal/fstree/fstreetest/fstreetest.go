// Package fstreetest makes file contents and trees for tests of the
// writers that consume an fstree (btrfs, send streams): deterministic
// pseudo-random data of any size without holding it in memory, and sparse
// files.
package fstreetest

import (
	"encoding/binary"
	"io"
	"path"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/fstree"
)

// Random returns n bytes of deterministic pseudo-random data (xorshift
// from seed), made on the fly so big files cost no memory.
func Random(seed uint64, n int64) fstree.Content { return gen{seed, n} }

type gen struct {
	seed uint64
	n    int64
}

func (g gen) Size() int64 { return g.n }

func (g gen) Open() (io.ReadCloser, error) {
	return io.NopCloser(io.LimitReader(&genReader{x: g.seed*2654435761 + 1}, g.n)), nil
}

// Data returns Random(seed, n)'s bytes.
func Data(seed uint64, n int) []byte {
	b := make([]byte, n)
	r, _ := gen{seed, int64(n)}.Open()
	io.ReadFull(r, b)
	return b
}

type genReader struct {
	x   uint64
	buf [8]byte
	n   int
}

func (r *genReader) Read(p []byte) (int, error) {
	done := 0
	for r.n == 0 && len(p)-done >= 8 { // whole words: same stream, faster
		r.step()
		binary.LittleEndian.PutUint64(p[done:], r.x)
		done += 8
	}
	for i := done; i < len(p); i++ {
		if r.n == 0 {
			r.step()
			binary.LittleEndian.PutUint64(r.buf[:], r.x)
			r.n = 8
		}
		p[i] = r.buf[8-r.n]
		r.n--
	}
	return len(p), nil
}

func (r *genReader) step() {
	r.x ^= r.x << 13
	r.x ^= r.x >> 7
	r.x ^= r.x << 17
}

// Sparse returns a file of size bytes with data (Random, seeded from seed
// and the extent's index) only in its extents; holes read as zeros.
func Sparse(size int64, seed uint64, ext ...fstree.Extent) fstree.Content {
	return sparse{size, seed, ext}
}

type sparse struct {
	size int64
	seed uint64
	ext  []fstree.Extent
}

func (s sparse) Size() int64              { return s.size }
func (s sparse) Extents() []fstree.Extent { return s.ext }
func (s sparse) Open() (io.ReadCloser, error) {
	var rs []io.Reader
	pos := int64(0)
	for i, e := range s.ext {
		rs = append(rs, io.LimitReader(zeros{}, e.Offset-pos))
		g, _ := gen{s.seed*100 + uint64(i) + 7, e.Length}.Open()
		rs = append(rs, g)
		pos = e.Offset + e.Length
	}
	rs = append(rs, io.LimitReader(zeros{}, s.size-pos))
	return io.NopCloser(io.MultiReader(rs...)), nil
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// EpochTimes copies tr with every zero time set to the Unix epoch: what a
// filesystem or a send stream stores for "no time".
func EpochTimes(tr *fstree.Tree) *fstree.Tree {
	c := tr.Clone()
	c.Walk(func(_ string, n *fstree.Inode) error {
		for _, tm := range []*time.Time{&n.Atime, &n.Mtime, &n.Ctime} {
			if tm.IsZero() {
				*tm = time.Unix(0, 0)
			}
		}
		return nil
	})
	return c
}

// Put puts n at p in tr, making missing parent directories with times
// dirTime, and fails t if it cannot.
func Put(t testing.TB, tr *fstree.Tree, p string, n *fstree.Inode, dirTime time.Time) {
	t.Helper()
	if dir := path.Dir(p); dir != "." {
		if _, err := tr.MkdirAll(dir, dirTime); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.Put(p, n); err != nil {
		t.Fatal(err)
	}
}
