package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/builder"
	"github.com/mkimage/mkimage/internal/bytesize"
	"github.com/mkimage/mkimage/internal/cachedir"
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
	// Three groups, the common flags first in each; --help prints them
	// under their titles.
	in, layout, out := subFlags(), subFlags(), subFlags()
	inputFlags(in, &o)
	in.StringSliceVar(&o.Bootloader, "bootloader", nil, "the board's bootloader, checked against its format (odroid-c2: a signed u-boot.bin.sd.bin, or Hardkernel's pair bl1.bin.hardkernel,u-boot.bin; macchiatobin: flash-image.bin)")
	in.BoolVar(&o.Preconfigure, "preconfigure", false, "configure a Debian root's packages once in QEMU at build time, so cards boot configured (minutes; the image is then not byte-reproducible)")
	out.StringVarP(&o.Output, "output", "o", "", "image file to write (IMAGE.bmap and IMAGE.manifest.json go beside it)")
	out.BoolVar(&dryRun, "dry-run", false, "resolve the inputs and print the plan; write nothing")
	out.StringVar(&o.Compress, "compress", "", "also write IMAGE.zst or IMAGE.xz (zst|xz)")
	out.BoolVar(&asJSON, "json", false, "print the plan (--dry-run) or result as JSON")
	out.BoolVar(&o.Timings, "timings", false, "print how long each stage took, and record it in the manifest (which then differs from run to run)")
	out.BoolVarP(&quiet, "quiet", "q", false, "no progress lines")
	layout.StringVar(&bootSize, "boot-size", builder.DefaultBootSize, "boot partition size")
	layout.StringVar(&rootSize, "root-size", "", "root partition size (default: content plus --headroom)")
	layout.StringVar(&headroom, "headroom", builder.DefaultHeadroom, "free space added to an automatic root size")
	layout.StringVar(&o.Backend, "root-backend", builder.DefaultBackend, "root filesystem writer: native (Go btrfs writer) or mkfs (mkfs.btrfs --rootdir)")
	layout.BoolVar(&o.MetadataSingle, "metadata-single", false, "single btrfs metadata instead of DUP")
	groupFlags(fs, "[build] --board BOARD -o IMAGE [flags]", []flagGroup{
		{"What the node boots", in}, {"Output", out}, {"Disk layout", layout},
	})
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
	if o.Timings {
		res.Timings.Print(os.Stderr)
	}
	fmt.Printf("%s  %s\n", res.SHA256, res.Image)
	return nil
}

// inputFlags defines the flags naming what a node boots (board, kernel,
// root, initramfs, cluster config) and the cache they are fetched into:
// build and update share them, so a bundle is made of what an image of
// the same flags holds.
func inputFlags(fs *pflag.FlagSet, o *builder.Options) {
	fs.StringVarP(&o.Board, "board", "b", "", "board to build for (list them with: mkimage boards)")
	fs.StringVar(&o.Kernel, "kernel", "", "Debian arm64 kernel .deb, or a directory with Image, dtbs/ and lib/modules/VERSION/ (default: fetch Debian bookworm's current arm64 kernel)")
	fs.StringVar(&o.Rootfs, "rootfs", builder.DefaultRootfs, "root filesystem: debian[:SUITE] (Debian arm64 with LXC, first-boot configured), minimal (busybox), a directory, or a .tar/.tar.gz/.tar.xz/.tar.zst tarball")
	fs.StringSliceVar(&o.Packages, "packages", nil, "extra Debian packages for --rootfs debian (comma-separated, repeatable)")
	fs.BoolVar(&o.Slim, "slim", false, slimHelp)
	fs.StringArrayVar(&o.Overlays, "overlay", nil, "directory or tarball laid over the root after the project's overlays (repeatable, in order)")
	fs.StringVar(&o.Initramfs, "initramfs", "", "use this initramfs instead of building one")
	fs.StringSliceVar(&o.Coldplug, "coldplug", nil, "more kernel modules the initramfs carries for coldplug, besides the board's: loaded at boot only when a device present matches one of their aliases (comma-separated, repeatable)")
	fs.StringVar(&o.Config, "config", "", "cluster config (TOML) baked into the image")
	fs.StringVar(&o.UpdateKeys, "update-key", "", "public key file (from mkimage key generate) the node takes signed update bundles from: makes the image updatable (root as version roots/ID, counting boot.scr, automatic rollback)")
	fs.StringVar(&o.ChannelURL, "channel-url", "", "with --update-key: the signed channel document (mkimage fleet rollout writes it) the node's update timer follows, e.g. http://build-host:8080/channel.json")
	fs.IntVar(&o.Watchdog, "watchdog", builder.DefaultWatchdog, "with --update-key and a root the build makes (minimal, debian): the hardware watchdog timeout in seconds nodeinit arms and the root's init keeps fed, so a version that hangs is reset and falls back (0: none)")
	fs.StringArrayVar(&o.Append, "append", nil, "kernel command line argument after the board's (repeatable), e.g. --append apparmor=1")
	fs.StringVar(&o.CacheDir, "cache-dir", cachedir.Root(), "cache for downloads and built artifacts")
	fs.BoolVar(&o.PlainHTTP, "plain-http", false, "speak HTTP, not HTTPS, to the registries of the config's container images (rootfs = \"oci:...\"; a registry on loopback always gets HTTP)")
	fs.StringVar(&o.DockerConfig, "docker-config", "", "Docker config whose logins pull the config's container images (default $DOCKER_CONFIG/config.json or ~/.docker/config.json)")
}

// slimHelp is --slim's help, the same wherever a Debian root is built.
const slimHelp = "Debian root without man pages, info, docs (copyright files stay) or non-English translations, by dpkg path filters the root keeps for later installs; man-db never rebuilds its database"

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
