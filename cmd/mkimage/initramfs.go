package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/atomicfile"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/builder"
	"github.com/mkimage/mkimage/initramfs"
	"github.com/mkimage/mkimage/internal/build/rootfs"
)

func init() {
	register(&command{name: "initramfs", summary: "build a board's u-root initramfs (nodeinit + modules) alone", run: runInitramfs})
}

func runInitramfs(args []string) error {
	fs := newFlags("initramfs", "initramfs --board BOARD --kernel DEB|DIR -o FILE [--module NAME]... [--coldplug NAME]...")
	board := fs.String("board", "", "board whose modules are included ("+strings.Join(boards.Names(), ", ")+")")
	kernel := fs.String("kernel", "", "kernel: a linux-image .deb or a kernel build directory (Image, lib/modules/)")
	out := fs.StringP("output", "o", "", "output file (.cpio.xz)")
	mods := fs.StringArray("module", nil, "extra module to include with its dependencies (repeatable)")
	cold := fs.StringSlice("coldplug", nil, "extra module to carry for coldplug, besides the board's: loaded at boot only when a device present matches one of its aliases (comma-separated, repeatable)")
	epoch := fs.Int64("epoch", builder.InitrdEpoch.Unix(), "mtime of every entry (default 0, as in the initramfs mkimage build makes, whatever SOURCE_DATE_EPOCH says)")
	cache := fs.String("cache", "", "cache directory (default ${XDG_CACHE_HOME:-$HOME/.cache}/mkimage/initramfs)")
	quiet := fs.BoolP("quiet", "q", false, "print only errors")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usagef("initramfs: unexpected argument %q", fs.Arg(0))
	case *board == "":
		return usagef("initramfs: --board is required (one of %s)", strings.Join(boards.Names(), ", "))
	case *kernel == "":
		return usagef("initramfs: --kernel is required (a linux-image-*-arm64 .deb or a kernel build directory)")
	case *out == "":
		return usagef("initramfs: -o FILE is required")
	}
	b, err := boards.Get(*board)
	if err != nil {
		return usagef("--board: %v", err)
	}
	k, err := rootfs.ReadKernel(*kernel)
	if err != nil {
		return fmt.Errorf("--kernel %s: %w", *kernel, err)
	}
	modFS, err := modulesFS(k)
	if err != nil {
		return fmt.Errorf("--kernel %s: %w", *kernel, err)
	}
	var log io.Writer = os.Stderr
	if *quiet {
		log = nil
	}
	want, err := builder.BootModules(b, k)
	if err != nil {
		return err
	}
	res, err := initramfs.Build(context.Background(), initramfs.Options{
		Board: b, Modules: append(want, *mods...), Coldplug: append(b.ColdplugModules(), *cold...),
		ModulesFS: modFS, KernelVersion: k.Version,
		Epoch: time.Unix(*epoch, 0), CacheDir: *cache, Log: log,
	})
	if err != nil {
		return err
	}
	if err := initramfsCopy(res.Path, *out); err != nil {
		return err
	}
	if !*quiet {
		fmt.Fprintf(os.Stderr, "initramfs: %s: %d bytes, sha256 %s, %d modules (%s), %d for coldplug (%s)\n", *out, res.Size, res.SHA256, len(res.Modules), strings.Join(res.Modules, " "), len(res.Coldplug), strings.Join(res.Coldplug, " "))
	}
	return nil
}

// modulesFS is the kernel's lib/modules/<version> directory.
func modulesFS(k *rootfs.Kernel) (fs.FS, error) {
	return fs.Sub(k.Modules.FS(), "lib/modules/"+k.Version)
}

// initramfsCopy writes src to dst atomically (no half-written output).
func initramfsCopy(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := atomicfile.Create(dst, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Abort()
		return fmt.Errorf("%s: %w", dst, err)
	}
	return out.Commit()
}
