package btrfs

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/mkimage/mkimage/internal/fstree"
)

// Data goes out in writes of up to this many bytes.
const dataBuf = 8 * mib

// dataWriter gathers contiguous data into large writes and checksums each
// sector as it goes.
type dataWriter struct {
	out   *output
	buf   []byte
	start uint64 // image offset of buf[0]
	base  uint64 // image offset of csums[0]
	csums []uint32
}

// next returns a zeroed buffer of n bytes (n <= dataBuf) for data at
// addr, flushing what is gathered when addr does not follow it.
func (d *dataWriter) next(addr, n uint64) ([]byte, error) {
	if len(d.buf) > 0 && (d.start+uint64(len(d.buf)) != addr || uint64(len(d.buf))+n > dataBuf) {
		if err := d.flush(); err != nil {
			return nil, err
		}
	}
	if len(d.buf) == 0 {
		d.start = addr
	}
	k := len(d.buf)
	d.buf = d.buf[:k+int(n)]
	clear(d.buf[k:])
	return d.buf[k:], nil
}

func (d *dataWriter) flush() error {
	first := (d.start - d.base) / sectorSize
	for i := 0; i < len(d.buf); i += sectorSize {
		d.csums[first+uint64(i/sectorSize)] = crc32.Checksum(d.buf[i:i+sectorSize], castagnoli)
	}
	err := d.out.writeAt(d.buf, d.start)
	d.buf = d.buf[:0]
	return err
}

// writeData reads every file once, in tree order, filling inline extents
// and writing regular extents; it returns the data checksums.
func (l *layout) writeData(out *output) ([]uint32, error) {
	d := &dataWriter{out: out, buf: make([]byte, 0, dataBuf), base: l.dataStart,
		csums: make([]uint32, (l.dataEnd-l.dataStart)/sectorSize)}
	for _, f := range l.all {
		if f.rec.n.Type() != fstree.ModeRegular || (f.inline == nil && len(f.pieces) == 0) {
			continue
		}
		if err := l.readFile(d, f); err != nil {
			return nil, fmt.Errorf("btrfs: reading /%s: %w", f.rec.path, err)
		}
	}
	if len(d.buf) > 0 {
		if err := d.flush(); err != nil {
			return nil, err
		}
	}
	return d.csums, nil
}

func (l *layout) readFile(d *dataWriter, f *fileData) error {
	c := f.rec.n.Content
	if c == nil {
		return errShort
	}
	r, err := c.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	if f.inline != nil {
		if _, err := io.ReadFull(r, f.inline[21:]); err != nil {
			return short(err, f.size)
		}
		return nil
	}
	pos := int64(0)
	for _, p := range f.pieces {
		if p.off > pos {
			if err := skip(r, p.off-pos); err != nil {
				return short(err, f.size)
			}
			pos = p.off
		}
		for done := uint64(0); done < p.len; {
			n := min(p.len-done, dataBuf)
			buf, err := d.next(p.addr+done, n)
			if err != nil {
				return err
			}
			want := min(int64(n), f.size-pos)
			if want > 0 {
				if _, err := io.ReadFull(r, buf[:want]); err != nil {
					return short(err, f.size)
				}
				pos += want
			}
			done += n
		}
	}
	return nil
}

func short(err error, size int64) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("content is shorter than its size of %d bytes", size)
	}
	return err
}

// skip passes over a hole in r.
func skip(r io.Reader, n int64) error {
	if s, ok := r.(io.Seeker); ok {
		_, err := s.Seek(n, io.SeekCurrent)
		return err
	}
	_, err := io.CopyN(io.Discard, r, n)
	return err
}
