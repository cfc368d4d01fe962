package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/mkimage/mkimage/internal/cachedir"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/builder"
	"github.com/mkimage/mkimage/internal/build/bootblob"
)

func init() {
	register(&command{name: "bootloader", summary: "assemble a board's signed bootloader from open parts, or say what a bootloader file is", run: runBootloader})
}

func runBootloader(args []string) error {
	if len(args) > 0 && args[0] == "identify" {
		return runBootloaderIdentify(args[1:])
	}
	fs := newFlags("bootloader", "bootloader BOARD --amlogic DIR [--bl33 FILE] [--bl31 FILE] -o FILE\n       mkimage bootloader identify FILE...")
	amlogic := fs.String("amlogic", "", "directory with Amlogic's BL2 (bl2.package or bl2.bin), bl30.bin, bl301.bin: a Hardkernel u-boot tree (branch odroidc2-v2015.01, fip/gxb/) or a directory holding them")
	bl33 := fs.String("bl33", "", "BL33 (an unsigned u-boot.bin; default: the board's from Debian, u-boot-amlogic)")
	bl31 := fs.String("bl31", "", "BL31 (ARM Trusted Firmware; default: the board's from Debian, arm-trusted-firmware)")
	out := fs.StringP("output", "o", "", "file to write (u-boot.bin.sd.bin, for --bootloader)")
	cache := fs.String("cache-dir", cachedir.Root(), "cache for downloads")
	quiet := fs.BoolP("quiet", "q", false, "no progress lines")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() != 1:
		return usagef("bootloader: name one board (%s)", strings.Join(boards.Names(), ", "))
	case *out == "":
		return usagef("bootloader: -o FILE is required")
	}
	var log io.Writer = os.Stderr
	if *quiet {
		log = nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	parts, err := builder.AssembleBootloader(ctx, builder.BootloaderOptions{
		Board: fs.Arg(0), BL33: *bl33, BL31: *bl31, Amlogic: *amlogic, Output: *out, CacheDir: *cache, Log: log,
	})
	if err != nil {
		return err
	}
	if !*quiet {
		for _, p := range parts {
			fmt.Fprintf(os.Stderr, "%-6s %7d bytes  sha256 %s  %s\n", p.Name, p.Size, p.SHA256[:16], p.Path)
		}
		fmt.Fprintf(os.Stderr, "wrote %s\n", *out)
	}
	return nil
}

func runBootloaderIdentify(args []string) error {
	fs := newFlags("bootloader identify", "bootloader identify FILE...")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("bootloader identify: name at least one file")
	}
	for _, p := range fs.Args() {
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fmt.Printf("%s: %s\n", p, bootblob.Identify(data))
	}
	return nil
}
