package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/mkimage/mkimage/internal/cachedir"

	"github.com/mkimage/mkimage/internal/bytesize"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/builder"
)

// version is set at link time (-ldflags "-X main.version=...").
var version = "dev"

func init() {
	register(&command{name: "build", summary: "build an SD card image for a board (the default command)", run: runBuild})
}

func runBuild(args []string) error {
	fs := newFlags("build", "[build] --board BOARD -o IMAGE [flags]")
	var o builder.Options
	var bootSize, rootSize, headroom string
	var dryRun, asJSON, quiet bool
	fs.StringVarP(&o.Board, "board", "b", "", "board to build for (list them with: mkimage boards)")
	fs.StringVarP(&o.Output, "output", "o", "", "image file to write (IMAGE.bmap and IMAGE.manifest.json go beside it)")
	fs.StringVar(&o.Kernel, "kernel", "", "Debian arm64 kernel .deb, or a directory with Image, dtbs/ and lib/modules/VERSION/ (default: fetch Debian bookworm's current arm64 kernel)")
	fs.StringVar(&o.Rootfs, "rootfs", builder.DefaultRootfs, "root filesystem: debian[:SUITE] (Debian arm64 with LXC, first-boot configured), minimal (busybox), a directory, or a .tar/.tar.gz/.tar.xz/.tar.zst tarball")
	fs.StringSliceVar(&o.Packages, "packages", nil, "extra Debian packages for --rootfs debian (comma-separated, repeatable)")
	fs.BoolVar(&o.Slim, "slim", false, slimHelp)
	fs.StringSliceVar(&o.Bootloader, "bootloader", nil, "the board's bootloader, checked against its format (odroid-c2: a signed u-boot.bin.sd.bin, or Hardkernel's pair bl1.bin.hardkernel,u-boot.bin; macchiatobin: flash-image.bin)")
	fs.StringArrayVar(&o.Overlays, "overlay", nil, "directory or tarball laid over the root after the project's overlays (repeatable, in order)")
	fs.StringVar(&o.Initramfs, "initramfs", "", "use this initramfs instead of building one")
	fs.StringSliceVar(&o.Coldplug, "coldplug", nil, "more kernel modules the initramfs carries for coldplug, besides the board's: loaded at boot only when a device present matches one of their aliases (comma-separated, repeatable)")
	fs.StringVar(&o.Config, "config", "", "cluster config (TOML) baked into the image")
	fs.StringVar(&bootSize, "boot-size", builder.DefaultBootSize, "boot partition size")
	fs.StringVar(&rootSize, "root-size", "", "root partition size (default: content plus --headroom)")
	fs.StringVar(&headroom, "headroom", builder.DefaultHeadroom, "free space added to an automatic root size")
	fs.StringVar(&o.Backend, "root-backend", builder.DefaultBackend, "root filesystem writer: native (Go btrfs writer) or mkfs (mkfs.btrfs --rootdir)")
	fs.BoolVar(&o.MetadataSingle, "metadata-single", false, "single btrfs metadata instead of DUP")
	fs.BoolVar(&o.Preconfigure, "preconfigure", false, "configure a Debian root's packages once in QEMU at build time, so cards boot configured (minutes; the image is then not byte-reproducible)")
	fs.StringVar(&o.Compress, "compress", "", "also write IMAGE.zst or IMAGE.xz (zst|xz)")
	fs.StringVar(&o.CacheDir, "cache-dir", cachedir.Root(), "cache for downloads and built artifacts")
	fs.BoolVar(&dryRun, "dry-run", false, "resolve the inputs and print the plan; write nothing")
	fs.BoolVar(&asJSON, "json", false, "print the plan (--dry-run) or result as JSON")
	fs.BoolVarP(&quiet, "quiet", "q", false, "no progress lines")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (flags only; see mkimage build --help)", fs.Arg(0))
	}
	if o.Board == "" {
		return usagef("--board is required (known boards: %v)", boards.Names())
	}
	if o.Output == "" && !dryRun {
		return usagef("-o IMAGE is required")
	}
	var err error
	for _, s := range []struct {
		flag, val string
		dst       *int64
	}{{"--boot-size", bootSize, &o.BootSize}, {"--root-size", rootSize, &o.RootSize}, {"--headroom", headroom, &o.Headroom}} {
		if s.val == "" {
			continue
		}
		if *s.dst, err = bytesize.Parse(s.val); err != nil {
			return usagef("%s: %v", s.flag, err)
		}
	}
	if o.Epoch, err = builder.EpochFromEnv(); err != nil {
		return err
	}
	o.Version = version
	if !quiet {
		o.Log = os.Stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if dryRun {
		p, err := builder.DryRun(ctx, o)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(p)
		}
		p.Print(os.Stdout)
		return nil
	}
	res, err := builder.Build(ctx, o)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(res)
	}
	fmt.Printf("%s  %s\n", res.SHA256, res.Image)
	return nil
}

// slimHelp is --slim's help, the same wherever a Debian root is built.
const slimHelp = "Debian root without man pages, info, docs (copyright files stay) or non-English translations, by dpkg path filters the root keeps for later installs; man-db never rebuilds its database"

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
