// Package netinstall writes a node's SD card from the netboot server: it
// fetches the card image (node.img) over HTTP through its block map onto
// the disk, flushes it, reads it back and checks the image's sha256, so
// the node can reboot into its card. Blocks the map leaves out are not
// written (as bmaptool does).
//
// The first sector (the partition table) is erased before anything else
// is written and written only after the rest has been checked: a card
// left half-written (power cut, server gone, bad data) has no partition
// table, so U-Boot does not boot it and falls through to netboot again.
//
// nodeinit calls it for netinstall=...: see Run, its netinstall step.
package netinstall

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/node/netfetch"
	"github.com/mkimage/mkimage/internal/update"
)

// Options say what to write where.
type Options struct {
	URL    string     // netinstall=... value, e.g. http://:80/node.img
	SHA256 string     // netinstall.sha256=...
	Server netip.Addr // boot server from the DHCP lease, for a URL with no host
	// Disk is the target ("mmcblk0", "/dev/vda" or a file); empty: the
	// only disk ChooseDisk finds.
	Disk     string
	SysBlock string // default /sys/block
	// Keys, the baked netboot keys (netfetch.LoadKeys): with any, the
	// image is taken only as the tree's signed images.json lists it.
	Keys []update.PublicKey
	// Fetcher sets the download's patience (nil: the defaults).
	Fetcher *netfetch.Fetcher
	Log     func(format string, a ...any)
}

// Install writes and checks the image; it returns the disk written. The
// caller reboots (unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)) afterwards.
func Install(ctx context.Context, o Options) (string, error) {
	if o.SysBlock == "" {
		o.SysBlock = "/sys/block"
	}
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	disk, err := ChooseDisk(o.SysBlock, o.Disk)
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	f0 := netfetch.Fetcher{}
	if o.Fetcher != nil {
		f0 = *o.Fetcher
	}
	f0.Log = logf
	src, err := netfetch.Open(ctx, netfetch.Image{URL: o.URL, SHA256: o.SHA256, Server: o.Server, Keys: o.Keys}, &f0)
	if err != nil {
		return "", err
	}
	m, u := src.Map, src.URL
	if fi.Mode().IsRegular() {
		if fi.Size() < m.ImageSize {
			if err := f.Truncate(m.ImageSize); err != nil {
				return "", err
			}
		}
	} else if size, err := unix.IoctlGetUint64(int(f.Fd()), unix.BLKGETSIZE64); err == nil && int64(size) < m.ImageSize {
		return "", fmt.Errorf("disk %s holds %d bytes, the image needs %d", disk, size, m.ImageSize)
	}
	logf("writing %s to %s", u, disk)
	sync := func() error {
		if err := f.Sync(); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			// Drop the block device's cache so the check reads the card.
			if err := unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0); err != nil {
				return fmt.Errorf("BLKFLSBUF %s: %w", disk, err)
			}
		}
		return nil
	}
	// Erase the old partition table before the first write: from then
	// until the new one is in place the card must not look bootable. An
	// image refused before that (its first range does not match its
	// map) leaves the card as it was.
	h := &headLast{dev: f, first: func() error {
		var zero [headSize]byte
		if _, err := f.WriteAt(zero[:], 0); err != nil {
			return fmt.Errorf("erasing the partition table of %s: %w", disk, err)
		}
		return sync()
	}}
	if err := src.WriteTo(ctx, h, sync); err != nil {
		return "", err
	}
	// Everything else is on the card and checked: now the table.
	if _, err := f.WriteAt(h.head[:], 0); err != nil {
		return "", fmt.Errorf("writing the partition table of %s: %w", disk, err)
	}
	if err := sync(); err != nil {
		return "", err
	}
	var back [headSize]byte
	if _, err := f.ReadAt(back[:], 0); err != nil {
		return "", fmt.Errorf("reading back the partition table of %s: %w", disk, err)
	}
	if back != h.head {
		return "", fmt.Errorf("%s: the partition table read back differs from the one written (failing card?)", disk)
	}
	if !fi.Mode().IsRegular() {
		// Make the kernel re-read the new partition table.
		unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0)
	}
	logf("%s written and verified", disk)
	return disk, nil
}

// headSize is the part of the image held back until the rest is checked:
// the MBR with its partition table.
const headSize = 512

// headLast keeps writes to the image's first sector in memory (and reads
// of it come from there, so the image's sha256 covers it); the rest goes
// to the device, after first has run once.
type headLast struct {
	dev   netfetch.Device
	head  [headSize]byte
	first func() error
}

func (h *headLast) WriteAt(p []byte, off int64) (int, error) {
	if h.first != nil {
		if err := h.first(); err != nil {
			return 0, err
		}
		h.first = nil
	}
	n := 0
	if off < headSize {
		k := copy(h.head[off:], p)
		p, off, n = p[k:], off+int64(k), k
	}
	if len(p) == 0 {
		return n, nil
	}
	m, err := h.dev.WriteAt(p, off)
	return n + m, err
}

func (h *headLast) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	if off < headSize {
		k := copy(p, h.head[off:])
		p, off, n = p[k:], off+int64(k), k
	}
	if len(p) == 0 {
		return n, nil
	}
	m, err := h.dev.ReadAt(p, off)
	return n + m, err
}

// ChooseDisk returns the device to write: want as given ("mmcblk0",
// "/dev/mmcblk0" or a file path), or, with want empty, the only whole disk
// under sysBlock that is not a loop, RAM, zram, mtd or eMMC boot/rpmb
// area and not read-only. Several candidates are an error naming them.
func ChooseDisk(sysBlock, want string) (string, error) {
	if want != "" {
		if !strings.Contains(want, "/") {
			want = "/dev/" + want
		}
		return want, nil
	}
	ents, err := os.ReadDir(sysBlock)
	if err != nil {
		return "", err
	}
	var found []string
	for _, e := range ents {
		n := e.Name()
		skip := false
		for _, p := range []string{"loop", "ram", "zram", "mtdblock", "nbd", "dm-", "md", "sr"} {
			skip = skip || strings.HasPrefix(n, p)
		}
		if skip || strings.Contains(n, "boot") || strings.Contains(n, "rpmb") {
			continue
		}
		if ro, err := os.ReadFile(filepath.Join(sysBlock, n, "ro")); err == nil && strings.TrimSpace(string(ro)) == "1" {
			continue
		}
		if sz, err := os.ReadFile(filepath.Join(sysBlock, n, "size")); err == nil && strings.TrimSpace(string(sz)) == "0" {
			continue // an empty card reader
		}
		found = append(found, n)
	}
	sort.Strings(found)
	switch len(found) {
	case 0:
		return "", fmt.Errorf("no disk to install to under %s (is the card's driver module loaded?)", sysBlock)
	case 1:
		return "/dev/" + found[0], nil
	}
	return "", fmt.Errorf("several disks could take the image (%s); name one with netinstall.disk=NAME", strings.Join(found, ", "))
}
