// Package btrfsctl is the node's handful of btrfs operations, done with
// the kernel's ioctls so nodeinit needs no btrfs-progs: create, snapshot
// and delete subvolumes, read a subvolume's identity, grow a filesystem.
package btrfsctl

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Request numbers from linux/btrfs.h (_IOW/_IOR on magic 0x94).
const (
	iocResize        = 0x50009403 // _IOW(0x94, 3, struct btrfs_ioctl_vol_args)
	iocSnapDestroy   = 0x5000940f // _IOW(0x94, 15, struct btrfs_ioctl_vol_args)
	iocSubvolCreate  = 0x5000940e // _IOW(0x94, 14, struct btrfs_ioctl_vol_args)
	iocSnapCreateV2  = 0x50009417 // _IOW(0x94, 23, struct btrfs_ioctl_vol_args_v2)
	iocGetSubvolInfo = 0x81f8943c // _IOR(0x94, 60, struct btrfs_ioctl_get_subvol_info_args)

	subvolRDOnly = 1 << 1 // BTRFS_SUBVOL_RDONLY
	rootRDOnly   = 1 << 0 // BTRFS_ROOT_SUBVOL_RDONLY, in subvol info flags
)

// struct btrfs_ioctl_vol_args { __s64 fd; char name[4088]; }
type volArgs struct {
	Fd   int64
	Name [4088]byte
}

// struct btrfs_ioctl_vol_args_v2: fd, transid, flags, a 32-byte union
// (qgroup inherit), then the name.
type volArgsV2 struct {
	Fd      int64
	Transid uint64
	Flags   uint64
	_       [4]uint64
	Name    [4040]byte
}

// struct btrfs_ioctl_timespec { __u64 sec; __u32 nsec; } (padded to 16).
type ioctlTime struct {
	Sec  uint64
	Nsec uint32
	_    uint32
}

// struct btrfs_ioctl_get_subvol_info_args.
type subvolInfoArgs struct {
	TreeID       uint64
	Name         [256]byte
	ParentID     uint64
	DirID        uint64
	Generation   uint64
	Flags        uint64
	UUID         [16]byte
	ParentUUID   [16]byte
	ReceivedUUID [16]byte
	CTransid     uint64
	OTransid     uint64
	STransid     uint64
	RTransid     uint64
	CTime        ioctlTime
	OTime        ioctlTime
	STime        ioctlTime
	RTime        ioctlTime
	_            [8]uint64
}

// Is says whether path is on a btrfs filesystem.
func Is(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && uint32(st.Type) == unix.BTRFS_SUPER_MAGIC
}

func ioctl(dir string, req uintptr, arg unsafe.Pointer) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), req, uintptr(arg)); errno != 0 {
		return errno
	}
	return nil
}

// name checks that the last element of p can name a subvolume.
func name(p string, max int) (string, error) {
	n := filepath.Base(p)
	if n == "." || n == ".." || n == "/" || len(n) >= max {
		return "", fmt.Errorf("%s: not a subvolume name", p)
	}
	return n, nil
}

func volIoctl(p string, req uintptr) error {
	var a volArgs
	n, err := name(p, len(a.Name))
	if err != nil {
		return err
	}
	copy(a.Name[:], n)
	return ioctl(filepath.Dir(p), req, unsafe.Pointer(&a))
}

// Create makes an empty subvolume at p (its parent directory must exist).
func Create(p string) error {
	if err := volIoctl(p, iocSubvolCreate); err != nil {
		return fmt.Errorf("%s: create subvolume (BTRFS_IOC_SUBVOL_CREATE): %w", p, err)
	}
	return nil
}

// Snapshot makes dst a snapshot of the subvolume src, read-only if asked.
// The snapshot is complete or absent: the kernel makes it in one
// transaction.
func Snapshot(src, dst string, readOnly bool) error {
	var a volArgsV2
	n, err := name(dst, len(a.Name))
	if err != nil {
		return err
	}
	copy(a.Name[:], n)
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", src, err)
	}
	defer f.Close()
	a.Fd = int64(f.Fd())
	if readOnly {
		a.Flags = subvolRDOnly
	}
	if err := ioctl(filepath.Dir(dst), iocSnapCreateV2, unsafe.Pointer(&a)); err != nil {
		return fmt.Errorf("snapshot %s as %s (BTRFS_IOC_SNAP_CREATE_V2): %w", src, dst, err)
	}
	return nil
}

// Delete removes the subvolume at p, read-only or not, with what is in
// it. A subvolume that still holds nested subvolumes is refused by the
// kernel (ENOTEMPTY).
func Delete(p string) error {
	if err := volIoctl(p, iocSnapDestroy); err != nil {
		return fmt.Errorf("%s: delete subvolume (BTRFS_IOC_SNAP_DESTROY): %w", p, err)
	}
	return nil
}

// Grow grows the mounted filesystem at p to fill its device (resize
// "max"). Repeating it is a no-op.
func Grow(p string) error {
	var a volArgs
	copy(a.Name[:], "max")
	if err := ioctl(p, iocResize, unsafe.Pointer(&a)); err != nil {
		return fmt.Errorf("%s: BTRFS_IOC_RESIZE max: %w", p, err)
	}
	return nil
}

// Info is a subvolume's identity as the kernel keeps it.
type Info struct {
	ID, ParentID     uint64
	Name             string
	ReadOnly         bool
	UUID             [16]byte
	ParentUUID       [16]byte // the subvolume a snapshot was taken of; zero for others
	ReceivedUUID     [16]byte // zero unless made by btrfs receive
	CTransid         uint64
	STransid         uint64 // the stream's ctransid, for a received one
	Created, Receive time.Time
}

// Received says whether the subvolume came from a send stream.
func (i Info) Received() bool { return i.ReceivedUUID != [16]byte{} }

// Stat returns the identity of the subvolume whose root is p. A path
// that is not a subvolume root is an error: a plain directory of the same
// name must never pass for a version.
func Stat(p string) (Info, error) {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return Info{}, err
	}
	if st.Ino != 256 { // BTRFS_FIRST_FREE_OBJECTID: every subvolume's root
		return Info{}, fmt.Errorf("%s: not a btrfs subvolume", p)
	}
	var a subvolInfoArgs
	if err := ioctl(p, iocGetSubvolInfo, unsafe.Pointer(&a)); err != nil {
		if errors.Is(err, unix.ENOTTY) {
			return Info{}, fmt.Errorf("%s: not on btrfs: %w", p, err)
		}
		return Info{}, fmt.Errorf("%s: BTRFS_IOC_GET_SUBVOL_INFO: %w", p, err)
	}
	n, _, _ := bytes.Cut(a.Name[:], []byte{0})
	return Info{
		ID: a.TreeID, ParentID: a.ParentID, Name: string(n),
		ReadOnly: a.Flags&rootRDOnly != 0,
		UUID:     a.UUID, ParentUUID: a.ParentUUID, ReceivedUUID: a.ReceivedUUID,
		CTransid: a.CTransid, STransid: a.STransid,
		Created: time.Unix(int64(a.OTime.Sec), int64(a.OTime.Nsec)),
		Receive: time.Unix(int64(a.RTime.Sec), int64(a.RTime.Nsec)),
	}, nil
}
