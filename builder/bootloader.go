package builder

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/mkimage/mkimage/internal/cachedir"

	"github.com/mkimage/mkimage/internal/atomicfile"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/internal/build/amlimage"
	"github.com/mkimage/mkimage/internal/build/bootblob"
	"github.com/mkimage/mkimage/internal/build/deb"
	"github.com/mkimage/mkimage/internal/build/disk"
)

// loadBootloader reads the --bootloader files, checks them against the
// board's format and keeps the one blob the board's writes place.
func (in *inputs) loadBootloader(o *Options) error {
	b := in.board
	if len(o.Bootloader) == 0 {
		if b.Bootloader.Required {
			w := fmt.Sprintf("no --bootloader given: the card will not boot on a %s by itself (it needs %s); it still boots in QEMU with `mkimage qemu`", b.Name, b.Bootloader.Blob)
			in.warnings = append(in.warnings, w)
			logf(o, "warning: %s", w)
		}
		return nil
	}
	flag := "--bootloader " + strings.Join(o.Bootloader, ",")
	if len(b.Bootloader.Writes) == 0 {
		return fmt.Errorf("%s: board %s takes no bootloader on the card (firmware provides it)", flag, b.Name)
	}
	f, err := bootblob.Lookup(b.Bootloader.Format)
	if err != nil {
		return fmt.Errorf("board %s: %w", b.Name, err)
	}
	var files []bootblob.File
	var names []string
	for _, p := range o.Bootloader {
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("--bootloader: %w", err)
		}
		files = append(files, bootblob.File{Name: p, Data: data})
		names = append(names, filepath.Base(p))
		in.add("bootloader", p, sum(data), fmt.Sprintf("%d bytes, %s", len(data), bootblob.Identify(data)))
	}
	blob, err := f.Prepare(files)
	if err != nil {
		return fmt.Errorf("--bootloader for %s: %w", b.Name, err)
	}
	name := strings.Join(names, "+")
	if _, err := disk.PlaceBootloader(b, name, int64(len(blob))); err != nil {
		return fmt.Errorf("%s: %w", flag, err)
	}
	in.blob, in.blobName = blob, name
	return nil
}

// BootloaderOptions are the inputs of `mkimage bootloader`.
type BootloaderOptions struct {
	Board string
	// BL33 and BL31 are files; empty takes the board's Debian ones.
	BL33, BL31 string
	// Amlogic is a directory with Amlogic's BL2, BL30 and BL301: a
	// Hardkernel u-boot tree (fip/gxb/), or a directory holding the files.
	Amlogic string
	Output  string
	// CacheDir holds the apt cache (default cachedir.Root()).
	CacheDir string
	Log      io.Writer
}

// BootloaderPart is one input of an assembled bootloader.
type BootloaderPart struct {
	Name   string // BL2, BL30, ...
	Path   string // file, or "package:path" for a Debian part
	SHA256 string
	Size   int
}

// AssembleBootloader builds a board's signed bootloader from its parts and
// writes it to o.Output. Only formats that can be assembled from parts
// are supported (amlogic-gxbb-sd: a u-boot.bin.sd.bin for the Odroid C2).
func AssembleBootloader(ctx context.Context, o BootloaderOptions) ([]BootloaderPart, error) {
	b, err := boards.Get(o.Board)
	if err != nil {
		return nil, err
	}
	if b.Bootloader.Format != "amlogic-gxbb-sd" {
		return nil, fmt.Errorf("board %s: mkimage cannot assemble its bootloader (format %q); pass the vendor's file to --bootloader", b.Name, b.Bootloader.Format)
	}
	if o.Amlogic == "" {
		return nil, errors.New("the Amlogic parts (BL2, BL30, BL301) are needed: give the directory of Hardkernel's u-boot tree (branch odroidc2-v2015.01)")
	}
	if o.CacheDir == "" {
		o.CacheDir = cachedir.Root()
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	var parts []BootloaderPart
	part := func(name, where string, data []byte) []byte {
		parts = append(parts, BootloaderPart{Name: name, Path: where, SHA256: sum(data), Size: len(data)})
		return data
	}
	var blobs = map[string][]byte{}
	for _, p := range []struct{ name, file string }{{"BL2", "bl2.package"}, {"BL30", "bl30.bin"}, {"BL301", "bl301.bin"}} {
		where, data, err := amlogicPart(o.Amlogic, p.file)
		if err != nil {
			return nil, fmt.Errorf("--amlogic %s: %w", o.Amlogic, err)
		}
		blobs[p.name] = part(p.name, where, data)
	}
	for _, p := range []struct{ name, file string }{{"BL31", o.BL31}, {"BL33", o.BL33}} {
		if p.file != "" {
			data, err := os.ReadFile(p.file)
			if err != nil {
				return nil, fmt.Errorf("--%s: %w", strings.ToLower(p.name), err)
			}
			blobs[p.name] = part(p.name, p.file, data)
			continue
		}
		if b.Bootloader.Debian == nil {
			return nil, fmt.Errorf("board %s names no Debian %s: pass --%s", b.Name, p.name, strings.ToLower(p.name))
		}
		ref := b.Bootloader.Debian.BL33
		if p.name == "BL31" {
			ref = b.Bootloader.Debian.BL31
		}
		data, err := debianFile(ctx, &Options{CacheDir: o.CacheDir, Log: o.Log}, ref)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
		blobs[p.name] = part(p.name, ref, data)
	}
	// A BL33 that is already signed or packed would be wrapped twice.
	if k := bootblob.Identify(blobs["BL33"]).Kind; k != bootblob.UBoot && k != bootblob.ARM64 && k != bootblob.Unknown {
		return nil, fmt.Errorf("BL33 %s is %s; wanted an unsigned u-boot.bin", parts[len(parts)-1].Path, bootblob.Identify(blobs["BL33"]))
	}
	img, err := amlimage.Build(blobs["BL2"], amlimage.GXBBImages(blobs["BL30"], blobs["BL301"], blobs["BL31"], blobs["BL33"]))
	if err != nil {
		return nil, err
	}
	sd := amlimage.SDImage(img)
	// The result must be what the board's own check accepts.
	f, err := bootblob.Lookup(b.Bootloader.Format)
	if err != nil {
		return nil, err
	}
	if _, err := f.Prepare([]bootblob.File{{Name: o.Output, Data: sd}}); err != nil {
		return nil, fmt.Errorf("assembled bootloader fails its own check: %w", err)
	}
	if _, err := disk.PlaceBootloader(b, filepath.Base(o.Output), int64(len(sd))); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(o.Output, sd, 0o644); err != nil {
		return nil, err
	}
	return parts, nil
}

// amlogicPart finds one of Amlogic's GXBB files: in a Hardkernel u-boot
// tree (fip/gxb/), a gxb/ directory, or dir itself. BL2 may also be the
// bare bl2.bin.
func amlogicPart(dir, name string) (string, []byte, error) {
	names := []string{name}
	if name == "bl2.package" {
		names = append(names, "bl2.bin")
	}
	var tried []string
	for _, sub := range []string{"fip/gxb", "gxb", "."} {
		for _, n := range names {
			p := filepath.Join(dir, sub, n)
			data, err := os.ReadFile(p)
			if err == nil {
				return p, data, nil
			}
			if !errors.Is(err, os.ErrNotExist) {
				return "", nil, err
			}
			tried = append(tried, filepath.Join(sub, n))
		}
	}
	return "", nil, fmt.Errorf("no %s (looked for %s)", name, strings.Join(tried, ", "))
}

// debianFile returns one file of a Debian arm64 package, ref being
// "package:path/in/package".
func debianFile(ctx context.Context, o *Options, ref string) ([]byte, error) {
	pkg, want, _ := strings.Cut(ref, ":")
	debPath, err := fetchPackage(ctx, o, pkg)
	if err != nil {
		return nil, fmt.Errorf("fetching Debian's %s: %w", pkg, err)
	}
	p, err := deb.Open(debPath)
	if err != nil {
		return nil, err
	}
	var data []byte
	err = p.Data(func(h *tar.Header, r io.Reader) error {
		if data != nil || path.Clean(strings.TrimPrefix(h.Name, "./")) != want || h.Typeflag != tar.TypeReg {
			return nil
		}
		b, rerr := io.ReadAll(r)
		data = b
		return rerr
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", debPath, err)
	}
	if data == nil {
		return nil, fmt.Errorf("package %s from Debian (%s) has no %s", pkg, filepath.Base(debPath), want)
	}
	return data, nil
}
