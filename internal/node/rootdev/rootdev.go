// Package rootdev finds the node's root device and mounts it: the btrfs
// root partition on a card or disk that root= names, mounted with
// rootflags=, and made writable for first boot and put back after.
//
// 46 cards are written from one image, so they share the MBR disk id,
// the PARTUUIDs and the btrfs fsid until first boot re-randomises them.
// An identifier that stays right through that is the btrfs label: the
// builder writes root=LABEL=<label> into extlinux.conf, and first boot
// never changes the label. PARTUUID= and UUID= work too but go stale once
// first boot re-randomises ids unless the boot config is rewritten in the
// same step. With no root= at all the root is the one btrfs filesystem
// present; two or more is an error rather than a guess.
package rootdev

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/node/bootcfg"
	"github.com/mkimage/mkimage/internal/ondisk"
)

// blockDev is one block device as seen in sysfs.
type blockDev struct {
	Name   string // vda2
	Disk   string // vda (itself for a whole disk)
	PartNo int    // 0 for a whole disk
}

// listBlock lists the block devices under sysBlock (/sys/class/block),
// sorted by name.
func listBlock(sysBlock string) ([]blockDev, error) {
	ents, err := os.ReadDir(sysBlock)
	if err != nil {
		return nil, err
	}
	var devs []blockDev
	for _, e := range ents {
		d := blockDev{Name: e.Name(), Disk: e.Name()}
		if b, err := os.ReadFile(filepath.Join(sysBlock, e.Name(), "partition")); err == nil {
			d.PartNo, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			// A partition's sysfs directory sits inside its disk's.
			if real, err := filepath.EvalSymlinks(filepath.Join(sysBlock, e.Name())); err == nil {
				d.Disk = filepath.Base(filepath.Dir(real))
			}
		}
		devs = append(devs, d)
	}
	sort.Slice(devs, func(i, j int) bool { return devs[i].Name < devs[j].Name })
	return devs, nil
}

// matchRoot returns the devices that fit spec. open opens a device by
// name for reading. A network root (root=http://...) matches no device
// and is no error: it is fetched, not found (see package netroot).
func matchRoot(spec string, devs []blockDev, open func(name string) (io.ReaderAt, func(), error)) ([]string, error) {
	if bootcfg.IsNetRoot(spec) {
		return nil, nil
	}
	kind, want, _ := strings.Cut(spec, "=")
	if strings.HasPrefix(spec, "/dev/") {
		kind, want = "dev", strings.TrimPrefix(spec, "/dev/")
	}
	switch kind {
	case "dev", "LABEL", "UUID", "PARTUUID", "":
	default:
		return nil, fmt.Errorf("root=%s: unsupported (use LABEL=, UUID=, PARTUUID=, /dev/NAME or http://[HOST][:PORT]/root.img)", spec)
	}
	if kind == "PARTUUID" {
		want = strings.ToLower(want)
	}
	if kind == "UUID" {
		want = strings.ToLower(want)
	}
	var found []string
	for _, d := range devs {
		if kind == "dev" {
			if d.Name == want {
				found = append(found, d.Name)
			}
			continue
		}
		if kind == "PARTUUID" {
			if d.PartNo == 0 {
				continue
			}
			r, done, err := open(d.Disk)
			if err != nil {
				continue
			}
			id, _ := ondisk.DiskIDString(r)
			done()
			if id != "" && fmt.Sprintf("%s-%02x", id, d.PartNo) == want {
				found = append(found, d.Name)
			}
			continue
		}
		r, done, err := open(d.Name)
		if err != nil {
			continue // e.g. an empty card reader
		}
		fs, ok, _ := ondisk.ProbeBtrfs(r)
		done()
		switch {
		case !ok:
		case kind == "LABEL" && fs.Label == want,
			kind == "UUID" && fs.FSID == want,
			kind == "":
			found = append(found, d.Name)
		}
	}
	return found, nil
}

func openDev(name string) (io.ReaderAt, func(), error) {
	f, err := os.Open("/dev/" + name)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

// Find waits up to timeout for the device root= (spec) names and returns
// its path, /dev/NAME: SD cards and USB disks can take seconds after
// their driver loads. It calls poll between looks (coldplug loads more
// drivers meanwhile).
func Find(spec string, timeout time.Duration, poll func(), logf func(string, ...any)) (string, error) {
	show := spec
	if show == "" {
		show = "(none: the only btrfs filesystem)"
	}
	logf("waiting up to %v for root %s", timeout, show)
	deadline := time.Now().Add(timeout)
	var last []blockDev
	for {
		devs, err := listBlock("/sys/class/block")
		if err != nil {
			return "", err
		}
		last = devs
		found, err := matchRoot(spec, devs, openDev)
		if err != nil {
			return "", err
		}
		// Two filesystems with one label (say, a USB stick flashed
		// from the same image) would make the choice a guess.
		if len(found) > 1 {
			return "", fmt.Errorf("root %s matches several devices: %s", show, strings.Join(found, ", "))
		}
		if len(found) == 1 {
			dev := "/dev/" + found[0]
			logf("root %s is %s", show, dev)
			return dev, nil
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
		poll()
	}
	var names []string
	for _, d := range last {
		// Unattached loop devices (size 0) are noise in this message.
		if b, err := os.ReadFile(filepath.Join("/sys/class/block", d.Name, "size")); err == nil && strings.TrimSpace(string(b)) == "0" {
			continue
		}
		names = append(names, d.Name)
	}
	if len(names) == 0 {
		names = []string{"none"}
	}
	return "", fmt.Errorf("root %s not found after %v (block devices: %s)", show, timeout, strings.Join(names, " "))
}

// Mount mounts the root device dev on dir as fstype, with rootflags.
func Mount(dev, dir, fstype, rootflags string, logf func(string, ...any)) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	flags, data := MountOptions(rootflags)
	if err := unix.Mount(dev, dir, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s (%s, options %q) on %s: %w", dev, fstype, rootflags, dir, err)
	}
	logf("mounted %s on %s (%s)", dev, dir, fstype)
	return nil
}

// MountOptions splits rootflags= into mount flags and the options the
// filesystem reads (subvol=, compress=, ...).
func MountOptions(opts string) (uintptr, string) {
	var flags uintptr
	var data []string
	for _, o := range strings.Split(opts, ",") {
		switch o {
		case "":
		case "ro":
			flags |= unix.MS_RDONLY
		case "rw":
			flags &^= unix.MS_RDONLY
		case "noatime":
			flags |= unix.MS_NOATIME
		case "relatime":
			flags |= unix.MS_RELATIME
		case "nodev":
			flags |= unix.MS_NODEV
		case "nosuid":
			flags |= unix.MS_NOSUID
		case "noexec":
			flags |= unix.MS_NOEXEC
		default:
			data = append(data, o)
		}
	}
	return flags, strings.Join(data, ",")
}
