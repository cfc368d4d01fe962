package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/mkimage/mkimage/internal/bytesize"

	"github.com/mkimage/mkimage/internal/build/flash"
	"github.com/mkimage/mkimage/internal/build/progress"
)

func init() {
	register(&command{name: "flash", summary: "write an image to many SD cards at once and verify them", run: runFlash})
}

func runFlash(args []string) error {
	fs := newFlags("flash", "flash IMAGE[.zst|.xz] TARGET... [flags]")
	bmapPath := fs.String("bmap", "", "block map to use (default: IMAGE.bmap beside the image; without one, the image's data blocks)")
	yes := fs.BoolP("yes", "y", false, "do not ask before writing to block devices")
	force := fs.Bool("force", false, "write even to targets that look unsafe (mounted, swap, not removable, larger than --max-size)")
	maxSize := fs.String("max-size", "128GiB", "refuse block devices larger than this unless --force")
	noVerify := fs.Bool("no-verify", false, "do not read the targets back to check them")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 2 {
		return usagef("flash needs an image and at least one target, e.g. mkimage flash node.img /dev/sdb /dev/sdc")
	}
	limit, err := bytesize.Parse(*maxSize)
	if err != nil {
		return usagef("--max-size %q: %v", *maxSize, err)
	}
	image, paths := fs.Arg(0), fs.Args()[1:]

	m, from, err := flash.LoadMap(image, *bmapPath)
	if err != nil {
		return err
	}
	sys := flash.Sys{Root: "/"}
	targets := make([]flash.Target, len(paths))
	for i, p := range paths {
		if targets[i], err = sys.Inspect(p, limit); err != nil {
			return err
		}
	}
	if err := flash.Check(targets, m.ImageSize, *force); err != nil {
		return err
	}
	if flash.NeedsConfirm(targets) && !*yes {
		if !progress.IsTerminal(os.Stdin) {
			return usagef("no terminal to ask on before writing to block devices: pass --yes")
		}
		ok, err := flash.Confirm(os.Stdin, os.Stderr, image, targets)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("not confirmed; nothing written")
		}
	}
	fmt.Fprintf(os.Stderr, "flash: %s: %d of %d bytes mapped (from %s), %d targets\n", image, m.MappedBytes(), m.ImageSize, from, len(targets))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := flash.Flash(ctx, image, m, targets, flash.Options{
		Force:    *force,
		NoVerify: *noVerify,
		Progress: os.Stderr,
		Bars:     progress.IsTerminal(os.Stderr),
	})
	if err != nil {
		return err
	}
	flash.WriteTable(os.Stdout, res)
	if n := flash.Failed(res); n > 0 {
		return fmt.Errorf("%d of %d targets failed (see the table above)", n, len(res))
	}
	return nil
}
