package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/mkimage/mkimage/internal/bytesize"

	"github.com/mkimage/mkimage/internal/build/qemu"
)

func init() {
	register(&command{name: "qemu", summary: "boot an image in qemu-system-aarch64 (virt) and watch its console", run: runQemu})
}

func runQemu(args []string) error {
	fs := newFlags("qemu", "qemu IMAGE [--expect TEXT] [--timeout D] [--in-place] [--disk-size SIZE] [--mac MAC] [--dtb FILE | --dump-dtb FILE] [--log FILE]")
	expect := fs.String("expect", "", "exit 0 once TEXT appears on the console (without it: run until the VM powers off or ^C)")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long (with --expect: exit 1 and print the last console lines)")
	inPlace := fs.Bool("in-place", false, "boot IMAGE itself; by default the VM writes to a sparse copy")
	diskSize := fs.String("disk-size", "", "grow the copy to SIZE (e.g. 8G) as a bigger card would be")
	mac := fs.String("mac", "", "MAC address of the virtio network card (e.g. 52:54:00:12:34:56)")
	logFile := fs.String("log", "", "also write the console to FILE")
	dtb := fs.String("dtb", "", "boot with this device tree instead of QEMU's own (start from --dump-dtb's: the machine must match)")
	dumpDTB := fs.String("dump-dtb", "", "write the device tree QEMU makes for this image's machine to FILE and exit")
	quiet := fs.BoolP("quiet", "q", false, "do not stream the console to the terminal")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("qemu: want one IMAGE argument")
	}
	image := fs.Arg(0)
	var size int64
	if *diskSize != "" {
		if *inPlace {
			return usagef("qemu: --disk-size grows the copy; it cannot be used with --in-place")
		}
		n, err := bytesize.Parse(*diskSize)
		if err != nil {
			return usagef("--disk-size: %v", err)
		}
		size = n
	}
	tmp, err := os.MkdirTemp("", "mkimage-qemu-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	disk := image
	if !*inPlace {
		disk = filepath.Join(tmp, "disk.img")
		if err := qemu.CopyImage(image, disk, size); err != nil {
			return err
		}
	}
	o, bi, err := qemu.ImageOptions(disk, tmp)
	if err != nil {
		return err
	}
	o.MAC = *mac
	if *dumpDTB != "" {
		if err := qemu.DumpDTB(context.Background(), o, *dumpDTB); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "qemu: wrote QEMU's device tree for %s to %s\n", image, *dumpDTB)
		return nil
	}
	o.DTB = *dtb
	var console []io.Writer
	if !*quiet {
		console = append(console, os.Stdout)
	}
	if *logFile != "" {
		f, err := os.Create(*logFile)
		if err != nil {
			return err
		}
		defer f.Close()
		console = append(console, f)
	}
	o.Console = io.MultiWriter(console...)
	how := "U-Boot from the disk"
	if o.Kernel != "" {
		how = "its kernel and initramfs directly, console ttyAMA0"
	}
	if o.Watchdog {
		how += ", with an i6300esb watchdog (-no-reboot: its reset ends the run)"
	}
	fmt.Fprintf(os.Stderr, "qemu: %s image for %s: booting %s\n", image, bi.Board, how)

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	vm, err := qemu.Start(ctx, o)
	if err != nil {
		return err
	}
	defer vm.Kill()
	if *expect == "" {
		err := vm.Wait()
		if ctx.Err() != nil {
			return fmt.Errorf("qemu: stopped: %w", context.Cause(ctx))
		}
		return err
	}
	if _, err := vm.Console.Expect(ctx, *expect); err != nil {
		// The error carries the last 30 console lines.
		return fmt.Errorf("qemu: %w", err)
	}
	fmt.Fprintf(os.Stderr, "\nqemu: saw %q\n", *expect)
	return nil
}
