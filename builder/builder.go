// Package builder turns a board and its inputs into a bootable SD card
// image. The pipeline runs in plain stages, each a function of the one
// before:
//
//	resolve inputs → plan → file trees (boot, root) → filesystems (FAT,
//	btrfs) → disk (MBR, bootloader) → outputs (image, .bmap, manifest)
//
// The plan is a value that can be printed before anything is written
// (--dry-run). Every output is written under a temporary name and renamed
// when complete.
package builder

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mkimage/mkimage/internal/bytesize"
	"github.com/mkimage/mkimage/internal/cachedir"

	"github.com/mkimage/mkimage/boards"
)

// Options are the inputs of one build, as the CLI collects them.
type Options struct {
	Board  string
	Output string

	// Kernel is a Debian arm64 kernel .deb or a directory with Image,
	// dtbs/ and lib/modules/<version>/. Empty: Debian bookworm's current
	// arm64 kernel, fetched into the cache.
	Kernel string
	// Rootfs is a directory or a tarball, "debian[:SUITE]" (a Debian
	// arm64 root built from packages) or "minimal" (busybox). Empty:
	// "debian", bookworm.
	Rootfs string
	// Packages are installed in a Debian root besides its base set.
	Packages []string
	// Slim leaves man pages, info, docs (copyright files stay) and
	// translations other than English out of a Debian root, with dpkg
	// path filters the root keeps for later installs (debroot.SlimFilters),
	// and turns man-db's database rebuilds off.
	Slim bool
	// Bootloader is the board's bootloader: one file, or the files the
	// board's format takes together (Hardkernel's bl1.bin.hardkernel and
	// u-boot.bin); empty builds a card without one (with a warning where
	// the board needs it).
	Bootloader []string
	// Overlays are laid over the root after the project's own overlays,
	// in order.
	Overlays []string
	// Initramfs is a prebuilt initramfs; empty builds one for the board.
	Initramfs string
	// Coldplug names modules the built initramfs carries for coldplug
	// besides the board's: nodeinit loads each (with its dependencies)
	// only when a device present matches one of its aliases.
	Coldplug []string
	// Config is a cluster config file (TOML) baked into the image.
	Config string

	BootSize int64 // boot partition bytes (default 256 MiB)
	RootSize int64 // root partition bytes (0: content plus Headroom)
	Headroom int64 // free space added to an automatic root size

	// Backend writes the root filesystem: "native" (the Go btrfs
	// writer, default) or "mkfs" (mkfs.btrfs --rootdir, as a cross-check).
	Backend string
	// MetadataSingle selects single instead of DUP btrfs metadata.
	MetadataSingle bool

	// Preconfigure runs a Debian root's first-boot hooks (package
	// configuration) once in QEMU at build time (see preconfigure.go).
	// A preconfigured image is not byte-reproducible.
	Preconfigure bool

	// UpdateKeys, a file of public keys (`mkimage key generate`'s .pub
	// lines), makes the image updatable: the root is a version that takes
	// signed update bundles from these keys (see versioned.go). Empty:
	// one plain root.
	UpdateKeys string
	// NetbootKeys, a file of public keys, is baked into the initramfs
	// (netfetch.KeysPath): a node booted from it over the network takes
	// only root and card images a signed netboot tree lists (mkimage
	// netboot --update-key). It does not make the image updatable.
	NetbootKeys string
	// ChannelURL, with UpdateKeys, is the signed channel document the
	// node's update timer follows (updater.ChannelURLFile).
	ChannelURL string
	// Watchdog (seconds, 0: off) is the hardware watchdog timeout of an
	// updatable image whose root feeds it (minimal: busybox watchdog
	// from rcS; Debian: systemd's RuntimeWatchdogSec): nodeinit arms
	// the board's watchdog with it and hands it on at switch_root, so a
	// version that hangs is reset and falls back (see versioned.go).
	Watchdog int
	// Append are kernel command line arguments after the board's.
	Append []string

	// Timings records each stage's duration in the manifest too (it is
	// then no longer the same for the same inputs).
	Timings bool

	// Compress additionally writes IMAGE.zst or IMAGE.xz ("" none).
	Compress string

	// Epoch is the time stamped into everything the build creates
	// (SOURCE_DATE_EPOCH).
	Epoch time.Time
	// CacheDir holds downloads and cached artifacts.
	CacheDir string
	// Version is the tool version recorded in the manifest.
	Version string

	// Log receives progress lines; nil discards them.
	Log io.Writer

	// PlainHTTP speaks HTTP to the registries of containers' images
	// (rootfs = "oci:..."); without it only one on loopback gets HTTP,
	// as with mkimage update push.
	PlainHTTP bool
	// DockerConfig is the Docker config with registry logins ("":
	// registryauth.DefaultPath).
	DockerConfig string
}

// Defaults for Options fields left zero; the CLI shows them in --help.
const (
	DefaultBootSize = "256MiB"
	DefaultHeadroom = "256MiB"
	DefaultRootfs   = "debian"
	DefaultBackend  = "native"
	// DefaultWatchdog is --watchdog's default timeout in seconds: a
	// first boot's hooks run while nodeinit feeds it, so it only has
	// to outlast the root init's start.
	DefaultWatchdog = 60
	// MaxWatchdog is nodeinit's bound (package watchdog).
	MaxWatchdog = 3600
)

func (o *Options) fill() error {
	if o.Board == "" {
		return fmt.Errorf("no board given (use --board; known boards: %v)", boards.Names())
	}
	if o.Rootfs == "" {
		o.Rootfs = DefaultRootfs
	}
	if o.BootSize == 0 {
		o.BootSize, _ = bytesize.Parse(DefaultBootSize)
	}
	if o.Headroom == 0 {
		o.Headroom, _ = bytesize.Parse(DefaultHeadroom)
	}
	if o.Backend == "" {
		o.Backend = DefaultBackend
	}
	if o.Backend != "native" && o.Backend != "mkfs" {
		return fmt.Errorf("root backend %q: want native or mkfs", o.Backend)
	}
	if o.Compress != "" && o.Compress != "zst" && o.Compress != "xz" {
		return fmt.Errorf("--compress %q: want zst or xz", o.Compress)
	}
	if o.Watchdog < 0 || o.Watchdog > MaxWatchdog {
		return fmt.Errorf("--watchdog %d: want seconds from 1 to %d, or 0 for none", o.Watchdog, MaxWatchdog)
	}
	if err := checkDebianOnly(o); err != nil {
		return err
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.CacheDir == "" {
		o.CacheDir = cachedir.Root()
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	return nil
}

// EpochFromEnv returns SOURCE_DATE_EPOCH as a time, or the Unix epoch
// when it is unset, so builds are reproducible by default.
func EpochFromEnv() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	var sec int64
	if _, err := fmt.Sscanf(s, "%d", &sec); err != nil || sec < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want a non-negative number of seconds", s)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// Build runs the whole pipeline and writes the outputs.
func Build(ctx context.Context, o Options) (*Result, error) {
	p, err := Prepare(ctx, o)
	if err != nil {
		return nil, err
	}
	return p.Write(ctx, o.Output)
}

// DryRun resolves the inputs and returns the plan without writing an
// image.
func DryRun(ctx context.Context, o Options) (*Plan, error) {
	p, err := Prepare(ctx, o)
	if err != nil {
		return nil, err
	}
	return p.Plan(o.Output)
}

func logf(o *Options, format string, a ...any) {
	fmt.Fprintf(o.Log, "mkimage: "+format+"\n", a...)
}
