package firstboot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// struct btrfs_ioctl_vol_args { __s64 fd; char name[4088]; }
type btrfsVolArgs struct {
	Fd   int64
	Name [4088]byte
}

const (
	btrfsIocResize       = 0x50009403 // _IOW(0x94, 3, struct btrfs_ioctl_vol_args)
	btrfsIocSubvolCreate = 0x5000940e // _IOW(0x94, 14, struct btrfs_ioctl_vol_args)
)

func isBtrfs(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && uint32(st.Type) == unix.BTRFS_SUPER_MAGIC
}

func btrfsIoctl(dir string, req uintptr, name string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	var a btrfsVolArgs
	copy(a.Name[:len(a.Name)-1], name)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), req, uintptr(unsafe.Pointer(&a)))
	if errno != 0 {
		return errno
	}
	return nil
}

// growBtrfs grows the mounted filesystem at root to fill its device
// (BTRFS_IOC_RESIZE "max"; no btrfs-progs needed). Repeating it is a
// no-op.
func growBtrfs(root string) error {
	if err := btrfsIoctl(root, btrfsIocResize, "max"); err != nil {
		return fmt.Errorf("%s: BTRFS_IOC_RESIZE max: %w", root, err)
	}
	return nil
}

// ensureSubvolume makes root/rel a btrfs subvolume unless something is
// already there. On a non-btrfs root (tests) it makes a directory.
func ensureSubvolume(root, rel string) (created bool, err error) {
	p := filepath.Join(root, rel)
	if _, err := os.Lstat(p); err == nil {
		return false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	parent := filepath.Dir(p)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return false, err
	}
	if !isBtrfs(parent) {
		return true, os.Mkdir(p, 0o755)
	}
	if err := btrfsIoctl(parent, btrfsIocSubvolCreate, filepath.Base(p)); err != nil {
		return false, fmt.Errorf("%s: BTRFS_IOC_SUBVOL_CREATE: %w", p, err)
	}
	return true, nil
}
