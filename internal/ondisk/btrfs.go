package ondisk

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// The primary btrfs superblock and the fields that identify a filesystem
// (btrfs_super_block in the kernel's uapi/linux/btrfs_tree.h).
const (
	BtrfsSuperOffset = 0x10000
	BtrfsMagic       = "_BHRfS_M"
	btrfsMagicAt     = 0x40
	btrfsFSIDAt      = 0x20
	btrfsLabelAt     = 0x12b
	btrfsLabelLen    = 256
)

// Btrfs is what a btrfs superblock says about its filesystem.
type Btrfs struct {
	Label string
	FSID  string // 8-4-4-4-12 lower-case hex, as blkid prints it
}

// ProbeBtrfs reads the primary superblock from r: ok is false when r
// holds no btrfs (no magic, or too small to hold one).
func ProbeBtrfs(r io.ReaderAt) (b Btrfs, ok bool, err error) {
	sb := make([]byte, 0x1000)
	if _, err := r.ReadAt(sb, BtrfsSuperOffset); err != nil {
		if errors.Is(err, io.EOF) {
			return Btrfs{}, false, nil
		}
		return Btrfs{}, false, err
	}
	if string(sb[btrfsMagicAt:btrfsMagicAt+8]) != BtrfsMagic {
		return Btrfs{}, false, nil
	}
	label := sb[btrfsLabelAt : btrfsLabelAt+btrfsLabelLen]
	if i := bytes.IndexByte(label, 0); i >= 0 {
		label = label[:i]
	}
	return Btrfs{Label: string(label), FSID: FormatUUID(sb[btrfsFSIDAt : btrfsFSIDAt+16])}, true, nil
}

// FormatUUID prints 16 bytes as 8-4-4-4-12 lower-case hex.
func FormatUUID(b []byte) string {
	h := fmt.Sprintf("%x", b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// DiskIDString reads the MBR disk identifier as the kernel prints it in
// PARTUUIDs (8 lower-case hex digits), or "" when sector 0 has no MBR.
func DiskIDString(r io.ReaderAt) (string, error) {
	m, err := ReadMBR(r)
	if err != nil {
		var sig *SignatureError
		if errors.As(err, &sig) {
			return "", nil
		}
		return "", err
	}
	return fmt.Sprintf("%08x", m.DiskID), nil
}
