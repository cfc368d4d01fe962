package rootfs

import (
	"io"

	"github.com/mkimage/mkimage/internal/fstree"
)

const blockSize = 4096

// readSparse reads size bytes from r and keeps the blocks that are not
// all zeros. (archive/tar expands the holes of sparse entries and does
// not expose their map, so zero blocks stand in for it.)
func readSparse(r io.Reader, size int64) (fstree.Content, error) {
	m := &fstree.SparseBytes{Length: size}
	block := make([]byte, blockSize)
	var cur []byte // data of the extent being built
	flush := func(end int64) {
		if cur != nil {
			m.Ranges = append(m.Ranges, fstree.Extent{Offset: end - int64(len(cur)), Length: int64(len(cur))})
			m.Data = append(m.Data, cur)
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
