package sendstream

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// decoder reads a stream one command at a time, checks its framing and
// crc, and hands out the command's attributes. Attribute getters record
// the first problem in err, so a command's handler fetches everything it
// needs and checks once.
type decoder struct {
	r        *bufio.Reader
	maxBytes int64  // bytes the stream may have (Limits.MaxBytes)
	off      int64  // bytes read so far
	n        int    // commands read so far, the current one included
	start    int64  // where the current command starts
	buf      []byte // the current command, header included
	attrs    [attrMax + 1][]byte
	have     uint32 // bit typ set: attribute typ is present
	err      error
}

func newDecoder(r io.Reader, maxBytes int64) *decoder {
	return &decoder{r: bufio.NewReaderSize(r, maxCommand), maxBytes: maxBytes, buf: make([]byte, 0, maxCommand)}
}

// read fills b from the stream, counting what it read.
func (d *decoder) read(b []byte) error {
	n, err := io.ReadFull(d.r, b)
	d.off += int64(n)
	return err
}

// header checks the magic and the version.
func (d *decoder) header() error {
	var h [17]byte
	if err := d.read(h[:]); err != nil {
		return fmt.Errorf("send stream: reading the header: %w", err)
	}
	if string(h[:len(magic)]) != magic {
		return fmt.Errorf("send stream: not a btrfs send stream (it starts % x)", h[:len(magic)])
	}
	if v := binary.LittleEndian.Uint32(h[len(magic):]); v != 1 {
		return fmt.Errorf("send stream: version %d: only version 1 is read (btrfs send --proto 1)", v)
	}
	return nil
}

// next reads the next command, verifies its crc and splits its
// attributes. io.EOF: the stream ended where a command would start.
func (d *decoder) next() (uint16, error) {
	d.n++
	d.start = d.off
	var h [cmdHeader]byte
	if err := d.read(h[:]); err != nil {
		if err == io.EOF {
			return 0, io.EOF
		}
		return 0, fmt.Errorf("reading the command header: %w", err)
	}
	size := int64(binary.LittleEndian.Uint32(h[0:]))
	if cmdHeader+size > maxCommand {
		return 0, fmt.Errorf("the header claims %d bytes of attributes, more than a version 1 command holds (%d)", size, maxCommand-cmdHeader)
	}
	if d.off+size > d.maxBytes {
		return 0, fmt.Errorf("the stream is longer than the limit of %d bytes", d.maxBytes)
	}
	d.buf = append(d.buf[:0], h[:]...)[:cmdHeader+size]
	if err := d.read(d.buf[cmdHeader:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, fmt.Errorf("reading %d bytes of attributes: %w", size, err)
	}
	want := binary.LittleEndian.Uint32(h[6:])
	binary.LittleEndian.PutUint32(d.buf[6:], 0)
	if got := crc(d.buf); got != want {
		return 0, fmt.Errorf("crc32c is %#08x, the header says %#08x", got, want)
	}
	return binary.LittleEndian.Uint16(h[4:]), d.split()
}

// split indexes the attributes of the current command by type.
func (d *decoder) split() error {
	d.have, d.err = 0, nil
	for a := d.buf[cmdHeader:]; len(a) > 0; {
		at := len(d.buf) - len(a)
		if len(a) < 4 {
			return fmt.Errorf("attribute at byte %d of the command: %d bytes, too short for its header", at, len(a))
		}
		typ, l := binary.LittleEndian.Uint16(a), int(binary.LittleEndian.Uint16(a[2:]))
		if typ == 0 || typ > attrMax {
			return fmt.Errorf("attribute at byte %d of the command: unknown type %d", at, typ)
		}
		if len(a) < 4+l {
			return fmt.Errorf("%s attribute at byte %d of the command: claims %d bytes, %d are left", attrNames[typ], at, l, len(a)-4)
		}
		if d.have&(1<<typ) != 0 {
			return fmt.Errorf("%s attribute at byte %d of the command: given twice", attrNames[typ], at)
		}
		d.have |= 1 << typ
		d.attrs[typ] = a[4 : 4+l]
		a = a[4+l:]
	}
	return nil
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *decoder) has(typ uint16) bool { return d.have&(1<<typ) != 0 }

// bytes returns attribute typ, which the command must have. The slice
// is the command buffer's: copy what is kept.
func (d *decoder) bytes(typ uint16) []byte {
	if !d.has(typ) {
		d.fail(fmt.Errorf("no %s attribute", attrNames[typ]))
		return nil
	}
	return d.attrs[typ]
}

func (d *decoder) str(typ uint16) string { return string(d.bytes(typ)) }

// fixed returns attribute typ, which must be n bytes long.
func (d *decoder) fixed(typ uint16, n int) []byte {
	b := d.bytes(typ)
	if b != nil && len(b) != n {
		d.fail(fmt.Errorf("%s attribute is %d bytes, not %d", attrNames[typ], len(b), n))
		return nil
	}
	return b
}

func (d *decoder) u64(typ uint16) uint64 {
	if b := d.fixed(typ, 8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

func (d *decoder) uuid(typ uint16) (u [16]byte) {
	copy(u[:], d.fixed(typ, 16))
	return u
}

// time reads a btrfs_timespec (le64 seconds, le32 nanoseconds).
func (d *decoder) time(typ uint16) time.Time {
	b := d.fixed(typ, 12)
	if b == nil {
		return time.Time{}
	}
	sec, nsec := int64(binary.LittleEndian.Uint64(b)), binary.LittleEndian.Uint32(b[8:])
	t := time.Unix(sec, int64(nsec))
	switch {
	case nsec >= 1e9:
		d.fail(fmt.Errorf("%s has %d nanoseconds", attrNames[typ], nsec))
	case t.IsZero():
		// fstree's "no time", which the writer sends as the epoch.
		d.fail(fmt.Errorf("%s is %s, a time the tree cannot hold", attrNames[typ], t.UTC().Format(time.RFC3339)))
	}
	return t
}

// limit reads attribute typ, a size or an offset, which must not pass
// most.
func (d *decoder) limit(typ uint16, most int64) int64 {
	v := d.u64(typ)
	if v > uint64(most) {
		d.fail(fmt.Errorf("%s %d is more than the limit of %d", attrNames[typ], v, most))
		return 0
	}
	return int64(v)
}
