package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/internal/build/kbuild"
)

func init() {
	register(&command{name: "kernel", summary: "build a board's kernel (Image, DTBs, modules) from a source tarball", run: runKernel})
}

func runKernel(args []string) error {
	fs := newFlags("kernel", "kernel --board BOARD --src TARBALL|DIR -o DIR [--jobs N] [--fragment FILE]...")
	board := fs.String("board", "", "board whose kernel config fragments and device tree are used ("+strings.Join(boards.Names(), ", ")+")")
	src := fs.String("src", "", "kernel source: a .tar.xz/.tar.gz/.tar tarball (unpacked once into the cache) or a directory (never written to)")
	out := fs.StringP("output", "o", "", "output directory: Image, dtbs/, lib/modules/, config, System.map (replaced atomically)")
	jobs := fs.IntP("jobs", "j", 0, "parallel make jobs (default: number of CPUs)")
	frags := fs.StringArray("fragment", nil, "extra fragment file merged after the board's (repeatable; later wins)")
	base := fs.String("base", "allnoconfig", "config the fragments are applied to ("+strings.Join(kbuild.Bases, ", ")+")")
	toolchain := fs.String("toolchain", "auto", "cross toolchain ("+strings.Join(kbuild.Toolchains, ", ")+"); part of the cache key")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usagef("kernel: unexpected argument %q", fs.Arg(0))
	case *board == "":
		return usagef("kernel: --board is required (one of %s)", strings.Join(boards.Names(), ", "))
	case *src == "":
		return usagef("kernel: --src is required (a kernel source tarball or directory, e.g. /usr/src/linux-source-6.1.tar.xz)")
	case *out == "":
		return usagef("kernel: -o DIR is required")
	case *jobs < 0:
		return usagef("kernel: --jobs %d: want a positive number", *jobs)
	}
	b, err := boards.Get(*board)
	if err != nil {
		return usagef("--board: %v", err)
	}
	merged, err := mergeForBoard(*board, *frags)
	if err != nil {
		return err
	}
	res, s, err := resolveForBoard(merged, "--src", *src, *base, *toolchain)
	if err != nil {
		return err
	}
	if fatal := res.Fatal(); len(fatal) > 0 {
		return fmt.Errorf("kernel: %d required settings lost with kernel %s (see above); fix the fragments before building", len(fatal), s.Version)
	}
	tc, err := kbuild.DetectToolchain(*toolchain)
	if err != nil {
		return usagef("--toolchain: %v", err)
	}
	opts := kbuild.BuildOptions{Config: res.Config, Jobs: *jobs, Toolchain: tc, Progress: os.Stderr}
	if b.DTB != "" {
		opts.DTBs = []string{b.DTB}
	}
	r, err := s.Build(context.Background(), *out, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "kernel: %s for %s in %s\n", r.Release, b.Name, r.Dir)
	return nil
}
