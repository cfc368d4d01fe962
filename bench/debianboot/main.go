// Command debianboot boots a Debian-root image once under QEMU (TCG, 2
// vCPUs, 2 GiB) for bench/debian.sh and prints how long the first-boot
// configuration and the way to the login prompt took.
//
//	go run ./bench/debianboot IMAGE [MAC]
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/mkimage/mkimage/internal/build/qemu"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: debianboot IMAGE [MAC]")
		os.Exit(2)
	}
	mac := "52:54:00:e2:e0:01"
	if len(os.Args) > 2 {
		mac = os.Args[2]
	}
	if err := run(os.Args[1], mac); err != nil {
		fmt.Fprintln(os.Stderr, "debianboot:", err)
		os.Exit(1)
	}
}

func run(img, mac string) error {
	dir, err := os.MkdirTemp("", "debianboot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	disk := filepath.Join(dir, "disk.img")
	if err := qemu.CopyImage(img, disk, 0); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	start := time.Now()
	vm, err := qemu.Start(ctx, qemu.Options{Disk: disk, MemoryMiB: 2048, SMP: 2, MAC: mac, Console: os.Stdout})
	if err != nil {
		return err
	}
	defer vm.Kill()
	for _, step := range []struct{ text, label string }{
		{"dpkg-configure: configuring", "first-boot hook start"},
		{"packages installed ok in", "packages configured"},
		{"login:", "login prompt"},
	} {
		if _, err := vm.Console.Expect(ctx, step.text); err != nil {
			return fmt.Errorf("waiting for %q: %w", step.text, err)
		}
		fmt.Printf("\nto %s: %v\n", step.label, time.Since(start).Round(time.Second))
	}
	return nil
}
