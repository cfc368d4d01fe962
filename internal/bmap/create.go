package bmap

import (
	"bytes"
	"cmp"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"golang.org/x/sys/unix"
)

// Extent is a byte range [Off, Off+Len) of an image that holds data.
type Extent struct {
	Off, Len int64
}

// Blocks turns byte extents into sorted, merged block ranges (without
// checksums): starts round down and ends round up to BlockSize, ranges that
// touch or overlap merge, and everything is clipped to the image.
func Blocks(extents []Extent, imageSize int64) []Range {
	blocks := (imageSize + BlockSize - 1) / BlockSize
	var rs []Range
	for _, e := range extents {
		if e.Len <= 0 || e.Off >= imageSize {
			continue
		}
		first := max(e.Off, 0) / BlockSize
		last := min((e.Off+e.Len+BlockSize-1)/BlockSize, blocks) - 1
		rs = append(rs, Range{First: first, Last: last})
	}
	slices.SortFunc(rs, func(a, b Range) int { return cmp.Compare(a.First, b.First) })
	var out []Range
	for _, r := range rs {
		if n := len(out); n > 0 && r.First <= out[n-1].Last+1 {
			out[n-1].Last = max(out[n-1].Last, r.Last)
			continue
		}
		out = append(out, r)
	}
	return out
}

// Create builds the map of an image from the byte extents its writers
// report (partition table, bootloader, what the filesystems allocated) and
// hashes each range from img.
func Create(img io.ReaderAt, imageSize int64, extents []Extent) (*Map, error) {
	if imageSize <= 0 {
		return nil, errors.New("image is empty")
	}
	m := &Map{ImageSize: imageSize, BlockSize: BlockSize, ChecksumType: "sha256", Ranges: Blocks(extents, imageSize)}
	buf := make([]byte, 1<<20)
	for i := range m.Ranges {
		sum, err := m.hashRange(img, m.Ranges[i], buf)
		if err != nil {
			return nil, err
		}
		m.Ranges[i].Sum = sum
	}
	return m, nil
}

// FromFile maps an image that came without a map: the data extents the
// filesystem reports (SEEK_DATA/SEEK_HOLE), less blocks that are all
// zeros, since a zero block needs no writing onto a fresh target.
func FromFile(f *os.File) (*Map, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	if size == 0 {
		return nil, fmt.Errorf("%s: image is empty", f.Name())
	}
	var data []Extent
	fd := int(f.Fd())
	for off := int64(0); off < size; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole remains
		}
		if err != nil { // no SEEK_DATA support: treat all as data
			data = []Extent{{0, size}}
			break
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			end = size
		}
		data = append(data, Extent{start, end - start})
		off = end
	}
	s := newScanner(size)
	buf := make([]byte, 1<<20)
	for _, r := range Blocks(data, size) {
		off, end := s.m.Bytes(r)
		if err := s.feed(io.NewSectionReader(f, off, end-off), off, buf); err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name(), err)
		}
	}
	return s.finish(), nil
}

// Scan maps an image read as a stream of size bytes (a decompressing
// reader): every block that is not all zeros is mapped.
func Scan(r io.Reader, size int64) (*Map, error) {
	s := newScanner(size)
	if err := s.feed(io.LimitReader(r, size), 0, make([]byte, 1<<20)); err != nil {
		return nil, err
	}
	if s.pos != size {
		return nil, fmt.Errorf("image stream ended at byte %d of %d", s.pos, size)
	}
	return s.finish(), nil
}

// ScanAll is Scan for a stream of unknown length (until EOF).
func ScanAll(r io.Reader) (*Map, error) {
	s := newScanner(1<<63 - 1)
	if err := s.feed(r, 0, make([]byte, 1<<20)); err != nil {
		return nil, err
	}
	if s.pos == 0 {
		return nil, errors.New("image is empty")
	}
	s.m.ImageSize = s.pos
	return s.finish(), nil
}

// scanner builds ranges and their checksums from blocks fed in order.
type scanner struct {
	m    *Map
	pos  int64 // next byte expected
	open bool  // a range is open and cur hashes it
	cur  Range
	h    interface {
		io.Writer
		Sum([]byte) []byte
		Reset()
	}
}

func newScanner(size int64) *scanner {
	m := &Map{ImageSize: size, BlockSize: BlockSize, ChecksumType: "sha256"}
	return &scanner{m: m, h: m.NewHash()}
}

var zeroBlock = make([]byte, BlockSize)

// feed reads block-aligned data starting at byte off until EOF.
func (s *scanner) feed(r io.Reader, off int64, buf []byte) error {
	if off != s.pos {
		s.close()
		s.pos = off
	}
	for {
		n, err := io.ReadFull(r, buf)
		for p := 0; p < n; p += BlockSize {
			b := buf[p:min(p+BlockSize, n)]
			blk := s.pos / BlockSize
			if bytes.Equal(b, zeroBlock[:len(b)]) {
				s.close()
			} else {
				if !s.open {
					s.open, s.cur = true, Range{First: blk}
					s.h.Reset()
				}
				s.cur.Last = blk
				s.h.Write(b)
			}
			s.pos += int64(len(b))
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (s *scanner) close() {
	if s.open {
		s.cur.Sum = hex.EncodeToString(s.h.Sum(nil))
		s.m.Ranges = append(s.m.Ranges, s.cur)
		s.open = false
	}
}

func (s *scanner) finish() *Map {
	s.close()
	return s.m
}

// CheckedRange is the most bytes a range of the maps netboot serves
// holds (Split): a node holds a whole range in memory and checks its
// checksum before writing a byte of it, so a range that does not match
// leaves the target untouched.
const CheckedRange = 4 << 20

// Split cuts ranges longer than maxBytes (a multiple of the block size)
// into ranges of at most maxBytes and hashes the new ones from img.
func (m *Map) Split(img io.ReaderAt, maxBytes int64) error {
	n := maxBytes / m.BlockSize
	if n < 1 || maxBytes%m.BlockSize != 0 {
		return fmt.Errorf("split at %d bytes: want a multiple of the block size %d", maxBytes, m.BlockSize)
	}
	var out []Range
	buf := make([]byte, 1<<20)
	for _, r := range m.Ranges {
		if r.Last-r.First < n {
			out = append(out, r)
			continue
		}
		for first := r.First; first <= r.Last; first += n {
			p := Range{First: first, Last: min(first+n-1, r.Last)}
			sum, err := m.hashRange(img, p, buf)
			if err != nil {
				return err
			}
			p.Sum = sum
			out = append(out, p)
		}
	}
	m.Ranges = out
	return nil
}
