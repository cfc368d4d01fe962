package firstboot

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"github.com/mkimage/mkimage/internal/ondisk"

	"golang.org/x/sys/unix"
)

// rootDisk is where the root partition lives, read from sysfs.
type rootDisk struct {
	DiskPath  string // e.g. /dev/mmcblk0 (a regular image file in tests)
	DiskSize  uint64 // sectors of 512 bytes
	Partition int    // 1-4
	Start     uint64 // sectors
	Size      uint64 // sectors
	PartName  string
}

// findRootDisk resolves sys/class/block/<part> to its disk: the partition
// directory carries "partition", "start" and "size"; its parent directory
// is the disk, with its own "size".
func findRootDisk(sys, dev, part string) (rootDisk, error) {
	p := filepath.Join(sys, "class/block", part)
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return rootDisk{}, fmt.Errorf("root partition %s: %w", part, err)
	}
	num, err := readUint(filepath.Join(real, "partition"))
	if err != nil {
		return rootDisk{}, fmt.Errorf("root %s is not a partition: %w", part, err)
	}
	start, err := readUint(filepath.Join(real, "start"))
	if err != nil {
		return rootDisk{}, err
	}
	size, err := readUint(filepath.Join(real, "size"))
	if err != nil {
		return rootDisk{}, err
	}
	diskDir := filepath.Dir(real)
	diskSize, err := readUint(filepath.Join(diskDir, "size"))
	if err != nil {
		return rootDisk{}, err
	}
	return rootDisk{
		DiskPath: filepath.Join(dev, filepath.Base(diskDir)), DiskSize: diskSize,
		Partition: int(num), Start: start, Size: size, PartName: part,
	}, nil
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a number", path, strings.TrimSpace(string(b)))
	}
	return v, nil
}

// growPartition rewrites the root partition's MBR entry so that it ends
// at the end of the disk (or where the next partition starts) and tells
// the kernel with BLKPG_RESIZE_PARTITION, which works while the partition
// is mounted (BLKRRPART would fail with EBUSY). It returns the new size in
// sectors; doing it again changes nothing.
func growPartition(d rootDisk, logf func(string, ...any)) (uint64, error) {
	if d.Partition < 1 || d.Partition > 4 {
		return 0, fmt.Errorf("%s: root is partition %d; only MBR primary partitions 1-4 can be grown", d.DiskPath, d.Partition)
	}
	f, err := os.OpenFile(d.DiskPath, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var mbr [ondisk.SectorSize]byte
	if _, err := f.ReadAt(mbr[:], 0); err != nil {
		return 0, fmt.Errorf("%s: reading MBR: %w", d.DiskPath, err)
	}
	if mbr[ondisk.SignatureOffset] != 0x55 || mbr[ondisk.SignatureOffset+1] != 0xAA {
		return 0, fmt.Errorf("%s: no MBR signature 55 AA at byte 510", d.DiskPath)
	}
	off := ondisk.EntriesOffset + 16*(d.Partition-1)
	e := mbr[off : off+16]
	start := uint64(binary.LittleEndian.Uint32(e[8:]))
	size := uint64(binary.LittleEndian.Uint32(e[12:]))
	if start != d.Start {
		return 0, fmt.Errorf("%s: MBR entry %d starts at sector %d but the kernel says %d; not touching it", d.DiskPath, d.Partition, start, d.Start)
	}
	end := d.DiskSize
	for i := 0; i < 4; i++ { // never run into a later partition
		o := ondisk.EntriesOffset + 16*i
		s := uint64(binary.LittleEndian.Uint32(mbr[o+8:]))
		if i != d.Partition-1 && mbr[o+4] != 0 && s > start && s < end {
			end = s
		}
	}
	end = min(end, start+0xFFFFFFFF)
	want := end - start
	if size < want {
		binary.LittleEndian.PutUint32(e[12:], uint32(want))
		e[5], e[6], e[7] = 0xFE, 0xFF, 0xFF // CHS end: "use LBA"
		if _, err := f.WriteAt(e, int64(off)); err != nil {
			return 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, err
		}
		logf("nodeinit: firstboot: %s partition %d: %d -> %d sectors", d.DiskPath, d.Partition, size, want)
	} else {
		want = size
	}
	if want == d.Size {
		return want, nil
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if fi.Mode()&os.ModeDevice == 0 {
		logf("nodeinit: firstboot: %s is not a block device; kernel not told", d.DiskPath)
		return want, nil
	}
	return want, blkpgResize(f, d.Partition, d.Start*512, want*512)
}

func blkpgResize(f *os.File, pno int, start, length uint64) error {
	part := unix.BlkpgPartition{Start: int64(start), Length: int64(length), Pno: int32(pno)}
	arg := unix.BlkpgIoctlArg{Op: unix.BLKPG_RESIZE_PARTITION, Datalen: int32(unsafe.Sizeof(part)), Data: (*byte)(unsafe.Pointer(&part))}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKPG, uintptr(unsafe.Pointer(&arg)))
	if errno != 0 {
		return fmt.Errorf("%s: BLKPG_RESIZE_PARTITION %d to %d bytes: %v", f.Name(), pno, length, errno)
	}
	return nil
}

// newDiskID writes a fresh random MBR disk identifier (bytes 440-443), so
// that cards cloned from one image differ. PARTUUIDs derive from it, so
// after this the root must not be looked up by PARTUUID of the image.
func newDiskID(path string) ([4]byte, error) {
	var id [4]byte
	for id == [4]byte{} {
		if _, err := rand.Read(id[:]); err != nil {
			return id, err
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return id, err
	}
	defer f.Close()
	var sig [2]byte
	if _, err := f.ReadAt(sig[:], ondisk.SignatureOffset); err != nil || sig != [2]byte{0x55, 0xAA} {
		return id, fmt.Errorf("%s: no MBR signature 55 AA at byte 510", path)
	}
	if _, err := f.WriteAt(id[:], ondisk.TableOffset); err != nil {
		return id, err
	}
	return id, f.Sync()
}
