// Package ondisk reads and writes what both sides find on a card: the MBR
// (disk identifier, partition table) and the btrfs superblock's identity.
// It imports nothing board-specific, so nodeinit can use it. Only sector
// 0's bytes 440..511 are ever written, so the boot code bytes 0..439 stay
// free for a bootloader (the Odroid C2's FIP starts there).
package ondisk

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
)

// Partition types.
const (
	TypeFAT32LBA = 0x0c
	TypeLinux    = 0x83
)

// Byte offsets in sector 0.
const (
	SectorSize      = 512
	TableOffset     = 440 // disk identifier (4), reserved (2), 4 entries (64), 0x55AA
	TableLength     = SectorSize - TableOffset
	EntriesOffset   = 446 // four 16-byte entries
	SignatureOffset = 510 // 0x55 0xAA
)

// Partition is one MBR entry; offsets in bytes.
type Partition struct {
	Number   int   `json:"number"`
	Type     byte  `json:"type"`
	Bootable bool  `json:"bootable"`
	Start    int64 `json:"start"`
	Size     int64 `json:"size"`
}

// End is the offset just past the partition.
func (p Partition) End() int64 { return p.Start + p.Size }

// MBR is a DOS partition table.
type MBR struct {
	DiskID     uint32      `json:"disk_id"`
	Partitions []Partition `json:"partitions"`
}

// Range is a byte range of the disk that was written.
type Range struct {
	Offset int64 `json:"offset"`
	Length int64 `json:"length"`
}

// DiskID derives a non-zero disk identifier from the build's inputs, so the
// same inputs give the same image. (Cards cloned from one image share it;
// the node's first boot re-randomises it.)
func DiskID(inputs ...[]byte) uint32 {
	h := sha256.New()
	for _, in := range inputs {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(in)))
		h.Write(n[:])
		h.Write(in)
	}
	id := binary.LittleEndian.Uint32(h.Sum(nil))
	if id == 0 {
		id = 1
	}
	return id
}

// CHS encodes an LBA as the 3 CHS bytes with the 255-head, 63-sector
// geometry Linux tools use, saturating at 1023/254/63 like they do.
func CHS(lba int64) [3]byte {
	const heads, sectors = 255, 63
	c := lba / (heads * sectors)
	h := (lba / sectors) % heads
	s := lba%sectors + 1
	if c > 1023 {
		c, h, s = 1023, 254, 63
	}
	return [3]byte{byte(h), byte(s) | byte(c>>8&3)<<6, byte(c)}
}

// Bytes returns bytes 440..511 of sector 0: disk identifier, partition
// entries, signature.
func (m MBR) Bytes() ([]byte, error) {
	if len(m.Partitions) > 4 {
		return nil, fmt.Errorf("MBR holds 4 primary partitions, got %d", len(m.Partitions))
	}
	b := make([]byte, TableLength)
	binary.LittleEndian.PutUint32(b[0:], m.DiskID)
	for _, p := range m.Partitions {
		if p.Number < 1 || p.Number > 4 {
			return nil, fmt.Errorf("partition number %d: want 1..4", p.Number)
		}
		if p.Start%SectorSize != 0 || p.Size%SectorSize != 0 || p.Start <= 0 || p.Size <= 0 {
			return nil, fmt.Errorf("partition %d (start %d, size %d bytes): want positive whole sectors", p.Number, p.Start, p.Size)
		}
		lba, n := p.Start/SectorSize, p.Size/SectorSize
		if lba+n > 1<<32 {
			return nil, fmt.Errorf("partition %d ends at sector %d, beyond the MBR's 2^32 sectors", p.Number, lba+n)
		}
		e := b[6+16*(p.Number-1):][:16]
		if p.Bootable {
			e[0] = 0x80
		}
		s, end := CHS(lba), CHS(lba+n-1)
		copy(e[1:4], s[:])
		e[4] = p.Type
		copy(e[5:8], end[:])
		binary.LittleEndian.PutUint32(e[8:], uint32(lba))
		binary.LittleEndian.PutUint32(e[12:], uint32(n))
	}
	b[70], b[71] = 0x55, 0xaa
	return b, nil
}

// WriteMBR writes the disk identifier, table and signature (bytes
// 440..511); bytes 0..439 are left as they are.
func WriteMBR(w io.WriterAt, m MBR) (Range, error) {
	b, err := m.Bytes()
	if err != nil {
		return Range{}, err
	}
	if _, err := w.WriteAt(b, TableOffset); err != nil {
		return Range{}, fmt.Errorf("writing the MBR: %w", err)
	}
	return Range{TableOffset, TableLength}, nil
}

// ReadMBR parses sector 0. It fails without the 0x55AA signature.
func ReadMBR(r io.ReaderAt) (MBR, error) {
	s := make([]byte, SectorSize)
	if _, err := r.ReadAt(s, 0); err != nil {
		return MBR{}, fmt.Errorf("reading sector 0: %w", err)
	}
	return ParseMBR(s)
}

// SignatureError is sector 0 without the 0x55AA signature: no MBR.
type SignatureError struct{ Got [2]byte }

func (e *SignatureError) Error() string {
	return fmt.Sprintf("sector 0 has no MBR signature (bytes 510..511 are %02x %02x, want 55 aa)", e.Got[0], e.Got[1])
}

// ParseMBR parses a copy of sector 0.
func ParseMBR(s []byte) (MBR, error) {
	if len(s) < SectorSize {
		return MBR{}, fmt.Errorf("sector 0: %d bytes, want %d", len(s), SectorSize)
	}
	var m MBR
	if s[SignatureOffset] != 0x55 || s[SignatureOffset+1] != 0xaa {
		return m, &SignatureError{[2]byte{s[SignatureOffset], s[SignatureOffset+1]}}
	}
	m.DiskID = binary.LittleEndian.Uint32(s[TableOffset:])
	for i := 0; i < 4; i++ {
		e := s[EntriesOffset+16*i:][:16]
		n := int64(binary.LittleEndian.Uint32(e[12:]))
		if e[4] == 0 || n == 0 {
			continue
		}
		m.Partitions = append(m.Partitions, Partition{
			Number:   i + 1,
			Type:     e[4],
			Bootable: e[0]&0x80 != 0,
			Start:    int64(binary.LittleEndian.Uint32(e[8:])) * SectorSize,
			Size:     n * SectorSize,
		})
	}
	return m, nil
}
