package disk

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/mkimage/mkimage/internal/ondisk"

	"github.com/mkimage/mkimage/boards"
)

// Report is what `mkimage inspect` shows of a disk image's layout. It
// marshals to JSON as it reads.
type Report struct {
	Size        int64             `json:"size"`
	SignatureOK bool              `json:"mbr_signature_ok"`
	DiskID      string            `json:"disk_id,omitempty"` // "0x1234abcd", as sfdisk shows it
	Partitions  []PartitionReport `json:"partitions"`
	Board       string            `json:"board,omitempty"`
	Bootloader  []Region          `json:"bootloader,omitempty"`
	Problems    []string          `json:"problems,omitempty"`
	// BootCodeNonZero: sector 0 bytes 0..439 hold something.
	BootCodeNonZero bool `json:"boot_code_nonzero"`
}

// PartitionReport is one partition as found.
type PartitionReport struct {
	ondisk.Partition
	TypeName string `json:"type_name"`
	Aligned  bool   `json:"aligned_4mib"`
}

// Region is a disk range where the board puts bootloader bytes.
type Region struct {
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
	From   int64  `json:"blob_from"` // blob offset the region starts with
	SHA256 string `json:"sha256"`
	// NonZero reports whether any byte is set; DataEnd is the offset just
	// past the last non-zero byte (0 when none), which bounds the blob.
	NonZero bool  `json:"nonzero"`
	DataEnd int64 `json:"data_end,omitempty"`
}

func typeName(t byte) string {
	switch t {
	case ondisk.TypeFAT32LBA:
		return "FAT32 (LBA)"
	case 0x0b:
		return "FAT32 (CHS)"
	case ondisk.TypeLinux:
		return "Linux"
	case 0xee:
		return "GPT protective"
	case 0x82:
		return "Linux swap"
	}
	return fmt.Sprintf("type %#02x", t)
}

// Inspect reads the MBR of a disk image of size bytes and, when board is
// not nil, the regions where that board's bootloader goes. Damage is
// reported in Problems rather than as an error, so a broken card can still
// be looked at; only read failures are errors.
func Inspect(r io.ReaderAt, size int64, board *boards.Board) (Report, error) {
	rep := Report{Size: size}
	s := make([]byte, ondisk.SectorSize)
	if _, err := r.ReadAt(s, 0); err != nil {
		return rep, fmt.Errorf("reading sector 0: %w", err)
	}
	rep.BootCodeNonZero = lastNonZero(s[:ondisk.TableOffset]) >= 0
	m, err := ondisk.ParseMBR(s)
	if err != nil {
		rep.Problems = append(rep.Problems, err.Error())
	} else {
		rep.SignatureOK = true
		rep.DiskID = fmt.Sprintf("0x%08x", m.DiskID)
		for _, p := range m.Partitions {
			rep.Partitions = append(rep.Partitions, PartitionReport{Partition: p, TypeName: typeName(p.Type), Aligned: p.Start%Align == 0})
			if p.End() > size {
				rep.Problems = append(rep.Problems, fmt.Sprintf("partition %d ends at %d, past the disk's %d bytes", p.Number, p.End(), size))
			}
		}
		for i, a := range m.Partitions {
			for _, b := range m.Partitions[i+1:] {
				if a.Start < b.End() && b.Start < a.End() {
					rep.Problems = append(rep.Problems, fmt.Sprintf("partitions %d and %d overlap", a.Number, b.Number))
				}
			}
		}
	}
	if board == nil {
		return rep, nil
	}
	rep.Board = board.Name
	first := board.FirstPartitionOffset()
	if len(rep.Partitions) > 0 && rep.Partitions[0].Start < first {
		rep.Problems = append(rep.Problems, fmt.Sprintf("partition 1 starts at %d; board %s needs at least %d", rep.Partitions[0].Start, board.Name, first))
	}
	for _, w := range board.Bootloader.Writes {
		end := first
		if w.Length > 0 {
			end = w.To + w.Length
		}
		end = min(end, size)
		if end <= w.To {
			continue
		}
		b := make([]byte, end-w.To)
		if _, err := r.ReadAt(b, w.To); err != nil {
			return rep, fmt.Errorf("reading disk bytes %d..%d: %w", w.To, end-1, err)
		}
		sum := sha256.Sum256(b)
		reg := Region{Offset: w.To, Length: end - w.To, From: w.From, SHA256: hex.EncodeToString(sum[:])}
		if i := lastNonZero(b); i >= 0 {
			reg.NonZero, reg.DataEnd = true, w.To+int64(i)+1
		}
		rep.Bootloader = append(rep.Bootloader, reg)
	}
	if board.Bootloader.Required {
		for _, reg := range rep.Bootloader {
			if !reg.NonZero {
				rep.Problems = append(rep.Problems, fmt.Sprintf("board %s needs its bootloader (%s) but disk bytes %d..%d are all zero", board.Name, board.Bootloader.Blob, reg.Offset, reg.Offset+reg.Length-1))
			}
		}
	}
	return rep, nil
}

func lastNonZero(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] != 0 {
			return i
		}
	}
	return -1
}
