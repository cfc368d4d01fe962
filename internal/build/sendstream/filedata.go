package sendstream

import (
	"bytes"
	"fmt"
	"sort"

	"github.com/mkimage/mkimage/internal/fstree"
)

// fileData is a regular file's content as a stream writes it: runs of
// data sorted by offset, none touching the next (a write where one ends
// extends it), holes between and after them up to size.
type fileData struct {
	size int64
	runs []run
}

type run struct {
	off int64
	b   []byte
}

func (r run) end() int64 { return r.off + int64(len(r.b)) }

// dataEnd is where the last run ends.
func (f *fileData) dataEnd() int64 {
	if len(f.runs) == 0 {
		return 0
	}
	return f.runs[len(f.runs)-1].end()
}

// inOrder checks that data for off does not go before the data already
// written. A full stream sends a file front to back; asking that of every
// stream keeps each write to appending, so that none can make the reader
// shuffle runs around.
func (f *fileData) inOrder(off int64) error {
	if end := f.dataEnd(); off < end {
		return fmt.Errorf("data for offset %d, before the end of the data already written (%d): a full stream writes a file front to back", off, end)
	}
	return nil
}

// write puts b at off.
func (f *fileData) write(off int64, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if err := f.inOrder(off); err != nil {
		return err
	}
	if n := len(f.runs); n > 0 && f.runs[n-1].end() == off {
		f.runs[n-1].b = append(f.runs[n-1].b, b...)
	} else {
		f.runs = append(f.runs, run{off, bytes.Clone(b)})
	}
	f.size = max(f.size, off+int64(len(b)))
	return nil
}

// truncate cuts or extends the file to size; an extension is a hole.
func (f *fileData) truncate(size int64) {
	for n := len(f.runs); n > 0 && f.runs[n-1].off >= size; n-- {
		f.runs = f.runs[:n-1]
	}
	if n := len(f.runs); n > 0 && f.runs[n-1].end() > size {
		f.runs[n-1].b = f.runs[n-1].b[:size-f.runs[n-1].off]
	}
	f.size = size
}

// each calls fn with the data in [off, off+n), run by run, in order.
func (f *fileData) each(off, n int64, fn func(at int64, b []byte) error) error {
	end := off + n
	runs := f.runs // fn may append to f (a clone within one file)
	i := sort.Search(len(runs), func(i int) bool { return runs[i].end() > off })
	for ; i < len(runs) && runs[i].off < end; i++ {
		from, to := max(runs[i].off, off), min(runs[i].end(), end)
		if err := fn(from, runs[i].b[from-runs[i].off:to-runs[i].off]); err != nil {
			return err
		}
	}
	return nil
}

// dataIn counts the data bytes (not holes) in [off, off+n).
func (f *fileData) dataIn(off, n int64) int64 {
	var total int64
	f.each(off, n, func(_ int64, b []byte) error {
		total += int64(len(b))
		return nil
	})
	return total
}

// clone copies n bytes of src at srcOff to off, holes as holes.
func (f *fileData) clone(off int64, src *fileData, srcOff, n int64) error {
	if err := f.inOrder(off); err != nil {
		return err
	}
	err := src.each(srcOff, n, func(at int64, b []byte) error {
		return f.write(off+at-srcOff, b)
	})
	f.size = max(f.size, off+n)
	return err
}

// content is the file's data as fstree holds it: Bytes when it is one
// run from the start to the end, SparseBytes otherwise.
func (f *fileData) content() fstree.Content {
	if len(f.runs) == 0 && f.size == 0 {
		return fstree.Bytes(nil)
	}
	if len(f.runs) == 1 && f.runs[0].off == 0 && f.runs[0].end() == f.size {
		return fstree.Bytes(f.runs[0].b)
	}
	s := &fstree.SparseBytes{Length: f.size, Ranges: make([]fstree.Extent, len(f.runs)), Data: make([][]byte, len(f.runs))}
	for i, r := range f.runs {
		s.Ranges[i] = fstree.Extent{Offset: r.off, Length: int64(len(r.b))}
		s.Data[i] = r.b
	}
	return s
}
