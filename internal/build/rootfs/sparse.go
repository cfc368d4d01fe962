package rootfs

import (
	"bytes"
	"io"

	"github.com/mkimage/mkimage/internal/fstree"
)

const blockSize = 4096

// memSparse is sparse file content held in memory: the data extents and
// their bytes; everything else reads as zeros.
type memSparse struct {
	size    int64
	extents []fstree.Extent
	data    [][]byte // data[i] holds extents[i]
}

func (m *memSparse) Size() int64              { return m.size }
func (m *memSparse) Extents() []fstree.Extent { return m.extents }

func (m *memSparse) Open() (io.ReadCloser, error) {
	var rs []io.Reader
	var off int64
	for i, e := range m.extents {
		rs = append(rs, io.LimitReader(zeros{}, e.Offset-off), bytes.NewReader(m.data[i]))
		off = e.Offset + e.Length
	}
	rs = append(rs, io.LimitReader(zeros{}, m.size-off))
	return io.NopCloser(io.MultiReader(rs...)), nil
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// readSparse reads size bytes from r and keeps the blocks that are not
// all zeros. (archive/tar expands the holes of sparse entries and does
// not expose their map, so zero blocks stand in for it.)
func readSparse(r io.Reader, size int64) (fstree.Content, error) {
	m := &memSparse{size: size}
	block := make([]byte, blockSize)
	var cur []byte // data of the extent being built
	flush := func(end int64) {
		if cur != nil {
			m.extents = append(m.extents, fstree.Extent{Offset: end - int64(len(cur)), Length: int64(len(cur))})
			m.data = append(m.data, cur)
			cur = nil
		}
	}
	for off := int64(0); off < size; {
		n := min(int64(blockSize), size-off)
		if _, err := io.ReadFull(r, block[:n]); err != nil {
			return nil, unexpected(err)
		}
		if fstree.IsZero(block[:n]) {
			flush(off)
		} else {
			cur = append(cur, block[:n]...)
		}
		off += n
	}
	flush(size)
	return m, nil
}
