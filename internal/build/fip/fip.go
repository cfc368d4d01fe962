// Package fip reads and writes the table of contents of an ARM Trusted
// Firmware Firmware Image Package (FIP): a 16-byte header (name
// 0xAA640001, serial number, flags) followed by 40-byte entries (UUID,
// offset, size, flags), all little-endian, ended by an entry whose UUID
// is all zero. Offsets count from the start of the TOC.
package fip

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Name is the TOC header's first word.
const Name = 0xAA640001

const (
	headerSize = 16
	entrySize  = 40
)

// UUID is a TOC entry's UUID as stored: the first three fields
// little-endian, as ATF's uuid_t lays them out on its targets.
type UUID [16]byte

// Known entry UUIDs (ATF include/tools_share/firmware_image_package.h;
// BL301 is Amlogic's, from Hardkernel's fip_create).
var (
	BL2   = mustUUID(0x0becf95f, 0x224d, 0x4d3e, 0xa544, 0xc39d81c73f0a)
	BL30  = mustUUID(0x3dfd6697, 0xbe89, 0x49e8, 0xae5d, 0x78a140608213) // SCP_BL2
	BL301 = mustUUID(0xaabbccdd, 0xabcd, 0xefef, 0xabcd, 0x12345678abcd)
	BL31  = mustUUID(0x6d08d447, 0xfe4c, 0x4698, 0x9b95, 0x2950cbbd5a00)
	BL32  = mustUUID(0x89e1d005, 0xdc53, 0x4713, 0x8d2b, 0x500a4b7a3e38)
	BL33  = mustUUID(0xa7eed0d6, 0xeafc, 0x4bd5, 0x9782, 0x9934f234b6e4)
)

var names = map[UUID]string{BL2: "BL2", BL30: "BL30", BL301: "BL301", BL31: "BL31", BL32: "BL32", BL33: "BL33"}

func mustUUID(timeLow uint32, timeMid, timeHi, clockSeq uint16, node uint64) UUID {
	var u UUID
	binary.LittleEndian.PutUint32(u[0:], timeLow)
	binary.LittleEndian.PutUint16(u[4:], timeMid)
	binary.LittleEndian.PutUint16(u[6:], timeHi)
	binary.BigEndian.PutUint16(u[8:], clockSeq)
	for i := 0; i < 6; i++ {
		u[10+i] = byte(node >> (40 - 8*i))
	}
	return u
}

// String is the canonical text form, e.g. 0becf95f-224d-4d3e-a544-c39d81c73f0a.
func (u UUID) String() string {
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%x",
		binary.LittleEndian.Uint32(u[0:]), binary.LittleEndian.Uint16(u[4:]),
		binary.LittleEndian.Uint16(u[6:]), binary.BigEndian.Uint16(u[8:]), u[10:16])
}

// Name is the image's short name (BL2, BL30, ...), or the UUID when it is
// not a known one.
func (u UUID) Name() string {
	if n, ok := names[u]; ok {
		return n
	}
	return u.String()
}

// Entry is one TOC entry.
type Entry struct {
	UUID   UUID
	Offset uint64
	Size   uint64
	Flags  uint64
}

// TOC is a parsed table of contents.
type TOC struct {
	Serial  uint32
	Flags   uint64
	Entries []Entry
	// End is the terminator entry's offset (Hardkernel's fip_create and
	// fiptool put the end of the last image there).
	End uint64
}

// ErrNotFIP is returned when the data does not start with a TOC header.
var ErrNotFIP = errors.New("no FIP TOC header (0xAA640001)")

// maxEntries bounds a TOC walk: real packages hold a handful.
const maxEntries = 64

// Parse reads the TOC at the start of b and checks that every entry lies
// inside b.
func Parse(b []byte) (*TOC, error) {
	if len(b) < headerSize || binary.LittleEndian.Uint32(b) != Name {
		return nil, ErrNotFIP
	}
	t := &TOC{Serial: binary.LittleEndian.Uint32(b[4:]), Flags: binary.LittleEndian.Uint64(b[8:])}
	for i := 0; ; i++ {
		at := headerSize + i*entrySize
		if i > maxEntries || at+entrySize > len(b) {
			return nil, fmt.Errorf("FIP TOC: no terminating entry within %d entries", i)
		}
		var e Entry
		copy(e.UUID[:], b[at:at+16])
		e.Offset = binary.LittleEndian.Uint64(b[at+16:])
		e.Size = binary.LittleEndian.Uint64(b[at+24:])
		e.Flags = binary.LittleEndian.Uint64(b[at+32:])
		if e.UUID == (UUID{}) {
			t.End = e.Offset
			return t, nil
		}
		if e.Offset > uint64(len(b)) || e.Size > uint64(len(b))-e.Offset {
			return nil, fmt.Errorf("FIP TOC entry %d (%s): bytes %d..%d are past the end of the data (%d bytes)", i, e.UUID.Name(), e.Offset, e.Offset+e.Size, len(b))
		}
		if e.Offset < uint64(at+2*entrySize) && e.Size > 0 {
			return nil, fmt.Errorf("FIP TOC entry %d (%s): offset %d overlaps the TOC", i, e.UUID.Name(), e.Offset)
		}
		t.Entries = append(t.Entries, e)
	}
}

// Payload returns entry e's bytes within the FIP data b (which Parse
// checked).
func Payload(b []byte, e Entry) []byte { return b[e.Offset : e.Offset+e.Size] }

// Marshal writes the TOC's header, entries and terminator (whose offset
// is t.End) into a buffer of size bytes, the rest zero.
func (t *TOC) Marshal(size int) ([]byte, error) {
	need := headerSize + (len(t.Entries)+1)*entrySize
	if need > size {
		return nil, fmt.Errorf("FIP TOC of %d entries needs %d bytes, have %d", len(t.Entries), need, size)
	}
	b := make([]byte, size)
	binary.LittleEndian.PutUint32(b, Name)
	binary.LittleEndian.PutUint32(b[4:], t.Serial)
	binary.LittleEndian.PutUint64(b[8:], t.Flags)
	all := append(append([]Entry(nil), t.Entries...), Entry{Offset: t.End})
	for i, e := range all {
		at := headerSize + i*entrySize
		copy(b[at:], e.UUID[:])
		binary.LittleEndian.PutUint64(b[at+16:], e.Offset)
		binary.LittleEndian.PutUint64(b[at+24:], e.Size)
		binary.LittleEndian.PutUint64(b[at+32:], e.Flags)
	}
	return b, nil
}
