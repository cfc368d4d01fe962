// Package netroot gives a diskless node its root from the netboot server:
// it fetches the root image (root.img, a btrfs filesystem like a card's
// root partition) over HTTP through its block map into a sparse file on a
// tmpfs, checks its sha256, attaches it to a loop device and mounts it.
// Nothing but RAM holds the root; no NFS server is needed, and the root
// is the same btrfs (default subvolume "@") the card images carry.
//
// nodeinit calls it for root=http://...: see FindRoot and MountRoot, its
// find-root and mount-root steps for a diskless root.
package netroot

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/node/netfetch"
	"github.com/mkimage/mkimage/internal/update"
)

// Options say what to fetch and where to mount it.
type Options struct {
	URL    string     // root=... value, e.g. http://:80/root.img
	SHA256 string     // netroot.sha256=...
	Server netip.Addr // boot server from the DHCP lease, for a URL with no host
	// Dir is where a tmpfs is mounted to hold the image (default
	// /run/netroot); Target is where the root is mounted (e.g. /newroot).
	Dir        string
	Target     string
	FSType     string  // default btrfs
	Flags      string  // mount data, the filesystem's options (subvol=, compress=)
	MountFlags uintptr // MS_RDONLY, MS_NOATIME, ...
	// Keys, the baked netboot keys (netfetch.LoadKeys): with any, the
	// image is taken only as the tree's signed images.json lists it.
	Keys []update.PublicKey
	// Fetcher sets the download's patience (nil: the defaults).
	Fetcher *netfetch.Fetcher
	Log     func(format string, a ...any)
}

// Mount fetches, checks, loop-attaches and mounts the root; it returns
// the loop device. The loop device is set to autoclear, so it goes away
// when the root is unmounted. On failure nothing stays mounted, so
// Mount can be called again.
func Mount(ctx context.Context, o Options) (dev string, err error) {
	if o.Dir == "" {
		o.Dir = "/run/netroot"
	}
	if o.FSType == "" {
		o.FSType = "btrfs"
	}
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	f := netfetch.Fetcher{}
	if o.Fetcher != nil {
		f = *o.Fetcher
	}
	f.Log = logf
	src, err := netfetch.Open(ctx, netfetch.Image{URL: o.URL, SHA256: o.SHA256, Server: o.Server, Keys: o.Keys}, &f)
	if err != nil {
		return "", err
	}
	m, u := src.Map, src.URL
	if err := checkRAM("/proc/meminfo", m.MappedBytes()); err != nil {
		return "", fmt.Errorf("%s: %w", u, err)
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return "", err
	}
	// A tmpfs exactly as large as the image: the sparse file grows only
	// as the root is written.
	size := (m.ImageSize + 4095) &^ 4095
	if err := unix.Mount("netroot", o.Dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", size+1<<20)); err != nil {
		return "", fmt.Errorf("tmpfs on %s: %w", o.Dir, err)
	}
	defer func() {
		if err != nil {
			unix.Unmount(o.Dir, unix.MNT_DETACH) // the image's RAM back
		}
	}()
	img := filepath.Join(o.Dir, "root.img")
	file, err := os.OpenFile(img, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o600)
	if err != nil {
		return "", err
	}
	defer file.Close()
	if err := file.Truncate(m.ImageSize); err != nil {
		return "", err
	}
	if err := src.WriteTo(ctx, file, nil); err != nil {
		return "", err
	}
	dev, lf, err := Attach(file)
	if err != nil {
		return "", err
	}
	// Autoclear detaches the loop device at its last close unless it is
	// mounted: hold it open until the mount holds it.
	defer lf.Close()
	if err := os.MkdirAll(o.Target, 0o755); err != nil {
		Detach(dev)
		return "", err
	}
	if err := unix.Mount(dev, o.Target, o.FSType, o.MountFlags, o.Flags); err != nil {
		Detach(dev)
		return "", fmt.Errorf("mount %s (%s from %s) on %s: %w", dev, o.FSType, u, o.Target, err)
	}
	logf("root %s mounted from %s via %s", o.Target, u, dev)
	return dev, nil
}

// checkRAM fails when the image's data would not fit in the RAM
// meminfo says is available (with 64 MiB left for the system): filling
// the tmpfs past that ends in the OOM killer, not an error. Without a
// readable meminfo it says nothing.
func checkRAM(meminfo string, need int64) error {
	b, err := os.ReadFile(meminfo)
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		var kb int64
		if _, err := fmt.Sscanf(line, "MemAvailable: %d kB", &kb); err == nil {
			if avail := kb << 10; need+64<<20 > avail {
				return fmt.Errorf("the root image holds %d MiB of data, this node has %d MiB of RAM available: give it more RAM or make the root smaller", need>>20, avail>>20)
			}
			return nil
		}
	}
	return nil
}

// Attach binds file to a free loop device (autoclear) and returns its
// path and an open handle: the device detaches when the handle is closed
// unless something (a mount) holds it. The kernel needs loop support
// (Debian: the loop module).
func Attach(file *os.File) (string, *os.File, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return "", nil, fmt.Errorf("%w (is the loop module loaded?)", err)
	}
	defer ctl.Close()
	for try := 0; try < 8; try++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", nil, fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		lf, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err != nil {
			return "", nil, err
		}
		err = unix.IoctlSetInt(int(lf.Fd()), unix.LOOP_SET_FD, int(file.Fd()))
		if err == unix.EBUSY {
			lf.Close()
			continue // another process took it first
		}
		if err != nil {
			lf.Close()
			return "", nil, fmt.Errorf("LOOP_SET_FD %s: %w", dev, err)
		}
		info := unix.LoopInfo64{Flags: unix.LO_FLAGS_AUTOCLEAR}
		copy(info.File_name[:], "netroot")
		if err := unix.IoctlLoopSetStatus64(int(lf.Fd()), &info); err != nil {
			unix.IoctlSetInt(int(lf.Fd()), unix.LOOP_CLR_FD, 0)
			lf.Close()
			return "", nil, fmt.Errorf("LOOP_SET_STATUS64 %s: %w", dev, err)
		}
		return dev, lf, nil
	}
	return "", nil, fmt.Errorf("no free loop device after 8 tries")
}

// Detach releases a loop device.
func Detach(dev string) error {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0)
}
