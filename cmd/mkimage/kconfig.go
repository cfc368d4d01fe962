package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/mkimage/mkimage/internal/cachedir"

	"github.com/mkimage/mkimage/internal/atomicfile"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/internal/build/kbuild"
	kernelconfig "github.com/mkimage/mkimage/kernel-configs"
)

func init() {
	register(&command{name: "kconfig", summary: "merge a board's kernel config fragments, resolve and check them", run: runKconfig})
}

func runKconfig(args []string) error {
	if len(args) > 0 && args[0] == "check" {
		return runKconfigCheck(args[1:])
	}
	fs := newFlags("kconfig", "kconfig --board BOARD [--fragment FILE]... [--kernel-src DIR|TARBALL] [-o FILE]\n       mkimage kconfig check --config FILE [--require SETS] [--json]")
	board := fs.String("board", "", "board whose kernel_fragments are merged first ("+strings.Join(boards.Names(), ", ")+")")
	frags := fs.StringArray("fragment", nil, "extra fragment file merged after the board's (repeatable; later wins)")
	src := fs.String("kernel-src", "", "kernel source directory or .tar.xz/.tar.gz/.tar: resolve with its Kconfig and report lost symbols")
	base := fs.String("base", "allnoconfig", "with --kernel-src: config the fragments are applied to ("+strings.Join(kbuild.Bases, ", ")+")")
	toolchain := fs.String("toolchain", "auto", "with --kernel-src: cross toolchain ("+strings.Join(kbuild.Toolchains, ", ")+"); Kconfig asks it what it supports")
	out := fs.StringP("output", "o", "", "write the merged fragment (or, with --kernel-src, the resolved .config) here instead of stdout")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("kconfig: unexpected argument %q", fs.Arg(0))
	}
	if *board == "" {
		return usagef("kconfig: --board is required (one of %s)", strings.Join(boards.Names(), ", "))
	}
	merged, err := mergeForBoard(*board, *frags)
	if err != nil {
		return err
	}
	if *src == "" {
		var buf bytes.Buffer
		merged.WriteTo(&buf)
		return writeOut(*out, buf.Bytes())
	}
	res, srcInfo, err := resolveForBoard(merged, "--kernel-src", *src, *base, *toolchain)
	if err != nil {
		return err
	}
	if fatal := res.Fatal(); len(fatal) > 0 {
		return fmt.Errorf("kconfig: %d required settings lost with kernel %s; add their dependencies with --fragment or drop them", len(fatal), srcInfo.Version)
	}
	return writeOut(*out, res.Config)
}

// mergeForBoard merges the board's fragments and the user's, reporting
// conflicts on stderr.
func mergeForBoard(board string, files []string) (*kernelconfig.Merged, error) {
	b, err := boards.Get(board)
	if err != nil {
		return nil, usagef("--board: %v", err)
	}
	var extra []*kernelconfig.Fragment
	for _, f := range files {
		fr, err := kernelconfig.ReadFragmentFile(f)
		if err != nil {
			return nil, fmt.Errorf("--fragment: %w", err)
		}
		extra = append(extra, fr)
	}
	merged, err := kernelconfig.ForBoardMerged(b, extra...)
	if err != nil {
		return nil, err
	}
	for _, c := range merged.Conflicts {
		fmt.Fprintf(os.Stderr, "kconfig: %s\n", c)
	}
	return merged, nil
}

// resolveForBoard resolves merged with the kernel source at src, printing
// each lost setting on stderr.
func resolveForBoard(merged *kernelconfig.Merged, srcFlag, src, base, toolchain string) (*kernelconfig.Resolution, *kbuild.Source, error) {
	cache := cachedir.Dir("kernel")
	s, err := kbuild.OpenSource(src, cache, os.Stderr)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", srcFlag, err)
	}
	tc, err := kbuild.DetectToolchain(toolchain)
	if err != nil {
		return nil, nil, usagef("--toolchain: %v", err)
	}
	res, err := kernelconfig.Resolve(context.Background(), merged, s, base, tc)
	if err != nil {
		return nil, nil, err
	}
	for _, l := range res.Losses {
		what := "lost"
		if !l.Fatal() {
			what = "note"
		}
		fmt.Fprintf(os.Stderr, "kconfig: %s: %s\n", what, l)
	}
	return res, s, nil
}

// writeOut writes data to file atomically, or to stdout for "" or "-".
func writeOut(file string, data []byte) error {
	if file == "" || file == "-" {
		_, err := os.Stdout.Write(data)
		return err
	}
	if err := atomicfile.WriteFile(file, data, 0o644); err != nil {
		return fmt.Errorf("-o %s: %w", file, err)
	}
	return nil
}

func runKconfigCheck(args []string) error {
	fs := newFlags("kconfig check", "kconfig check --config FILE [--require SET,...] [--json]")
	cfgFile := fs.String("config", "", "kernel config to check: a .config, /boot/config-*, or /proc/config.gz")
	require := fs.StringSlice("require", []string{"lxc", "netfilter", "btrfs"}, "requirement sets: "+strings.Join(kernelconfig.SetNames(), ", "))
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("kconfig check: unexpected argument %q", fs.Arg(0))
	}
	if *cfgFile == "" {
		return usagef("kconfig check: --config is required (e.g. /proc/config.gz or /boot/config-$(uname -r))")
	}
	cfg, err := kernelconfig.ReadConfigFile(*cfgFile)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	rep, err := kernelconfig.Check(cfg, *require)
	if err != nil {
		return usagef("--require: %v", err)
	}
	if *asJSON {
		err = rep.WriteJSON(os.Stdout)
	} else {
		err = rep.WriteTable(os.Stdout)
	}
	if err != nil {
		return err
	}
	if rep.Failed > 0 {
		return fmt.Errorf("kconfig check: %s lacks %d required settings", *cfgFile, rep.Failed)
	}
	return nil
}
