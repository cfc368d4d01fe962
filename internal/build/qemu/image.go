package qemu

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/build/fat"
	"github.com/mkimage/mkimage/internal/ondisk"
)

// BootInfo is the builder's mkimage.json on the boot partition: what the
// image is for and how its kernel is booted.
type BootInfo struct {
	Board   string `json:"board"`
	Kernel  string `json:"kernel"`
	Initrd  string `json:"initrd"`
	Cmdline string `json:"cmdline"`
}

// BootInfoFile is where the builder writes BootInfo on the boot (first)
// partition.
const BootInfoFile = "mkimage.json"

// ReadBootInfo reads mkimage.json from the FAT boot partition of a raw
// image.
func ReadBootInfo(image string) (*BootInfo, error) {
	var bi *BootInfo
	err := withBootFS(image, func(fsys *fat.FS) error {
		var err error
		bi, err = bootInfo(image, fsys)
		return err
	})
	return bi, err
}

func bootInfo(image string, fsys *fat.FS) (*BootInfo, error) {
	data, err := fsys.ReadFile(BootInfoFile)
	if err != nil {
		return nil, fmt.Errorf("%s: boot partition has no %s (not an image made by mkimage?): %w", image, BootInfoFile, err)
	}
	var bi BootInfo
	if err := json.Unmarshal(data, &bi); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", image, BootInfoFile, err)
	}
	if bi.Board == "" {
		return nil, fmt.Errorf("%s: %s names no board", image, BootInfoFile)
	}
	return &bi, nil
}

// withBootFS opens the FAT filesystem of the image's first partition.
func withBootFS(image string, fn func(*fat.FS) error) error {
	f, err := os.Open(image)
	if err != nil {
		return err
	}
	defer f.Close()
	mbr, err := ondisk.ReadMBR(f)
	if err != nil {
		return fmt.Errorf("%s: %w", image, err)
	}
	if len(mbr.Partitions) == 0 {
		return fmt.Errorf("%s: no partitions", image)
	}
	p := mbr.Partitions[0]
	fsys, err := fat.Open(io.NewSectionReader(f, p.Start, p.Size), p.Size)
	if err != nil {
		return fmt.Errorf("%s: boot partition: %w", image, err)
	}
	return fn(fsys)
}

var consoleArg = regexp.MustCompile(`(^|\s)console=\S*`)

// ForVirt rewrites a board's kernel command line for QEMU virt: the
// console becomes the PL011 UART ttyAMA0.
func ForVirt(cmdline string) string {
	c := consoleArg.ReplaceAllString(cmdline, "")
	if c != "" && c[0] == ' ' {
		c = c[1:]
	}
	return "console=ttyAMA0 " + c
}

// ImageOptions returns Options that boot image the way its board would
// under QEMU: a qemu-virt image through U-Boot from the disk; any other
// board's kernel and initramfs, taken from its boot partition into dir,
// directly with QEMU's device tree and the console moved to ttyAMA0.
func ImageOptions(image, dir string) (Options, *BootInfo, error) {
	var o Options
	var bi *BootInfo
	err := withBootFS(image, func(fsys *fat.FS) error {
		var err error
		bi, err = bootInfo(image, fsys)
		if err != nil {
			return err
		}
		o, err = bootOptions(image, dir, bi, fsys)
		return err
	})
	if err != nil {
		return Options{}, nil, err
	}
	return o, bi, nil
}

func bootOptions(image, dir string, bi *BootInfo, fsys *fat.FS) (Options, error) {
	o := Options{Disk: image}
	if bi.Board == "qemu-virt" {
		// The board's watchdog (boards/qemu-virt.toml).
		o.Watchdog = true
		return o, nil
	}
	for _, f := range []struct{ name, dst string }{{bi.Kernel, "Image"}, {bi.Initrd, "initrd"}} {
		if f.name == "" {
			return Options{}, fmt.Errorf("%s: %s names no kernel or initrd", image, BootInfoFile)
		}
		data, err := fsys.ReadFile(f.name)
		if err != nil {
			return Options{}, fmt.Errorf("%s: boot partition: %w", image, err)
		}
		p := filepath.Join(dir, f.dst)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return Options{}, err
		}
		if f.dst == "Image" {
			o.Kernel = p
		} else {
			o.Initrd = p
		}
	}
	o.Append = ForVirt(bi.Cmdline)
	return o, nil
}

// CopyImage copies src to dst for a VM to write to: a reflink where the
// filesystem offers one, else a sparse copy (holes stay holes). A size
// larger than src grows the copy (the new space is a hole).
func CopyImage(src, dst string, size int64) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if size != 0 && size < st.Size() {
		return fmt.Errorf("disk size %d is smaller than the image %s (%d bytes)", size, src, st.Size())
	}
	out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(dst)
		}
	}()
	if unix.IoctlFileClone(int(out.Fd()), int(in.Fd())) != nil {
		if err := sparseCopy(out, in, st.Size()); err != nil {
			return fmt.Errorf("copying %s: %w", src, err)
		}
	}
	if size > st.Size() {
		return out.Truncate(size)
	}
	return nil
}

// sparseCopy copies the data extents of in (SEEK_DATA/SEEK_HOLE).
func sparseCopy(out, in *os.File, size int64) error {
	if err := out.Truncate(size); err != nil {
		return err
	}
	fd := int(in.Fd())
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole remains
		}
		if err != nil {
			// No SEEK_DATA: copy everything.
			data = off
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			hole = size
		}
		for p := data; p < hole; {
			n := min(int64(len(buf)), hole-p)
			if _, err := in.ReadAt(buf[:n], p); err != nil {
				return err
			}
			if _, err := out.WriteAt(buf[:n], p); err != nil {
				return err
			}
			p += n
		}
		off = hole
	}
	return nil
}
