package rootdev

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/node/bootcfg"
)

// Writable remounts the root at dir read-write when rootflags made it
// read-only, for first boot, and says whether it did (Restore puts it
// back). A remount keeps the subvolume: the root stays the default
// subvolume the builder set (or the one rootflags named).
func Writable(dir, rootflags string, logf func(string, ...any)) (bool, error) {
	ro, err := remountRW(dir, rootflags)
	if err != nil {
		return false, fmt.Errorf("remount root read-write: %w", err)
	}
	if ro {
		logf("first-boot: root remounted read-write")
	}
	return ro, nil
}

// Restore makes the root's files durable and, when Writable remounted
// it, remounts it read-only again for the root's own init.
func Restore(dir, rootflags string, remounted bool, logf func(string, ...any)) {
	Sync(dir)
	if !remounted {
		return
	}
	if err := remountRO(dir, rootflags); err != nil {
		logf("warning: root stays read-write: remount read-only: %v", err)
	}
}

// Sync makes what was written to the filesystem mounted at dir durable.
func Sync(dir string) {
	if f, err := os.Open(dir); err == nil {
		unix.Syncfs(int(f.Fd()))
		f.Close()
	}
}

// remountRW remounts the filesystem at dir read-write if it is read-only
// and says whether it did. rootflags' other flags are kept; the
// filesystem keeps its own options (subvol=, compress=) on a remount.
func remountRW(dir, rootflags string) (bool, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		return false, err
	}
	if sfs.Flags&unix.ST_RDONLY == 0 {
		return false, nil
	}
	flags, _ := MountOptions(rootflags)
	return true, unix.Mount("", dir, "", unix.MS_REMOUNT|flags&^unix.MS_RDONLY, "")
}

// remountRO puts dir back to read-only.
func remountRO(dir, rootflags string) error {
	flags, _ := MountOptions(rootflags)
	return unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY|flags, "")
}

// Part is the root partition's kernel name (dev /dev/mmcblk0p2 gives
// mmcblk0p2) for first boot's partition steps, or "" for a diskless root
// (root= spec a URL: a loop device over RAM has no partition to grow or
// disk id to change).
func Part(spec, dev string) string {
	if dev == "" || bootcfg.IsNetRoot(spec) {
		return ""
	}
	return filepath.Base(dev)
}
