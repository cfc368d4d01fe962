package builder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/build/progress"
	"github.com/mkimage/mkimage/internal/build/qemu"
)

// Preconfigure (Options.Preconfigure, --preconfigure) runs a Debian root's
// first-boot hooks (/usr/lib/nodeinit/firstboot.d/, 50-dpkg-configure:
// the preinst scripts and `dpkg --configure -a`) once at build time, so
// every card flashed from the image boots with its packages configured
// instead of spending minutes on it at its first boot.
//
// The image, written to its temporary file, is booted in QEMU (-M virt)
// with the build's own kernel and initramfs loaded directly and the card's
// command line plus "nodeinit.preconfigure": nodeinit mounts the root, runs
// the pending hooks only and records them in firstboot.json, removes what
// the packages' scripts made that must be unique per node (SSH host keys,
// machine-id), unmounts the root and powers off. The per-node first-boot
// steps (machine-id, host keys, hostname, disk id, growth, network) still
// run on each card. This works for every board: the initramfs carries
// the virtio modules for coldplug and QEMU supplies its own device tree.
//
// A preconfigured image is not byte-reproducible: dpkg and the maintainer
// scripts stamp the current time into what they write, and the btrfs
// allocation depends on the run. Its block map is computed from the final
// image (data extents less zero blocks), not from the writers' ranges.

const (
	// preconfigureTimeout bounds the whole QEMU run (TCG emulation of
	// an arm64 machine takes minutes).
	preconfigureTimeout = 30 * time.Minute
	// preconfigureProgress is how often a progress line is logged off
	// a terminal.
	preconfigureProgress = 10 * time.Second
	// preconfigureExitWait is how long QEMU gets to exit after the done
	// line.
	preconfigureExitWait = 2 * time.Minute

	preconfigureArg    = "nodeinit.preconfigure"
	preconfigureDone   = "nodeinit: preconfigure: done"
	preconfigureFailed = "nodeinit: preconfigure: failed"
)

// preconfigureWarning goes into the manifest's warnings.
const preconfigureWarning = "preconfigured in QEMU (nodeinit.preconfigure): the root's first-boot hooks ran at build time; the image is not byte-reproducible"

// preconfigure boots image (the build's temporary file) in QEMU in
// nodeinit's preconfigure mode and waits for it to finish and power off.
func preconfigure(ctx context.Context, o *Options, in *inputs, p *Plan, image string) error {
	dir, err := os.MkdirTemp("", "mkimage-preconfigure-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	kernel, initrd := filepath.Join(dir, bootKernel), filepath.Join(dir, bootInitrd)
	if err := os.WriteFile(kernel, in.kernel.Image, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(initrd, in.initrd, 0o644); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, preconfigureTimeout)
	defer cancel()
	start := time.Now()
	logf(o, "preconfigure: booting the image in QEMU to configure its packages (several minutes under emulation)")
	vm, err := qemu.Start(ctx, qemu.Options{
		Disk: image, Kernel: kernel, Initrd: initrd,
		Append: qemu.ForVirt(p.Cmdline) + " " + preconfigureArg,
	})
	if err != nil {
		return err
	}
	defer vm.Kill()
	fail := func(why string) error {
		return fmt.Errorf("%s after %v; last console lines:\n%s", why, time.Since(start).Round(time.Second), strings.Join(vm.Console.Tail(30), "\n"))
	}
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	m := progress.Start(o.Log, progress.Options{
		Label: "mkimage: preconfigure", Unit: "packages set up", Every: preconfigureProgress,
		Watch: func() progress.Report { return configureProgress(vm.Console.String()) },
	})
	defer m.Stop()
	var doneAt time.Time
	for {
		select {
		case <-vm.Done():
			out := vm.Console.String()
			switch {
			case strings.Contains(out, preconfigureFailed):
				return fail("nodeinit failed")
			case !strings.Contains(out, preconfigureDone):
				err := vm.Wait()
				if err == nil {
					err = errors.New("no error")
				}
				return fail(fmt.Sprintf("QEMU exited before %q (%v)", preconfigureDone, err))
			}
			if err := vm.Wait(); err != nil {
				return fail(fmt.Sprintf("QEMU: %v", err))
			}
			m.Stop()
			for _, l := range strings.Split(out, "\n") {
				if i := strings.Index(l, "nodeinit: preconfigure: "); i >= 0 {
					logf(o, "preconfigure: node: %s", strings.TrimRight(l[i+len("nodeinit: preconfigure: "):], "\r"))
				}
			}
			logf(o, "preconfigure: done in %v", time.Since(start).Round(time.Second))
			return nil
		case <-ctx.Done():
			return fail(fmt.Sprintf("timed out (%v)", preconfigureTimeout))
		case <-poll.C:
			out := vm.Console.String()
			switch {
			case strings.Contains(out, "Kernel panic"):
				return fail("kernel panic")
			case strings.Contains(out, preconfigureFailed):
				// nodeinit powers off by itself; give it a moment
				// to, then stop it.
				select {
				case <-vm.Done():
				case <-time.After(10 * time.Second):
				}
				return fail("nodeinit failed")
			case strings.Contains(out, "nodeinit: rescue shell"):
				return fail("nodeinit stopped in its rescue shell")
			case doneAt.IsZero() && strings.Contains(out, preconfigureDone):
				doneAt = time.Now()
			case !doneAt.IsZero() && time.Since(doneAt) > preconfigureExitWait:
				return fail(fmt.Sprintf("the VM did not power off within %v of %q", preconfigureExitWait, preconfigureDone))
			}
		}
	}
}

// configureProgress reads a preconfigure run's console: the packages dpkg
// has set up ("Setting up" lines) of those the hook said it configures
// ("dpkg-configure: configuring N of M packages"), and its last line.
func configureProgress(console string) progress.Report {
	var r progress.Report
	lines := strings.Split(console, "\n")
	for _, l := range lines {
		if i := strings.Index(l, "dpkg-configure: configuring "); i >= 0 {
			var todo, all int
			if _, err := fmt.Sscanf(l[i:], "dpkg-configure: configuring %d of %d packages", &todo, &all); err == nil {
				r.Total.Items, r.Done.Items = todo, 0
			}
			continue
		}
		if strings.Contains(l, "Setting up ") {
			r.Done.Items++
		}
	}
	// The last line with text, not the kernel's (its messages while a
	// hook works say nothing of the hook), without the hook's prefix,
	// cut to fit a terminal line.
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if kernelLine(l) {
			continue
		}
		if rest, ok := strings.CutPrefix(l, "nodeinit: hook "); ok {
			if _, after, ok := strings.Cut(rest, ": "); ok {
				l = after
			}
		}
		if l != "" {
			if rs := []rune(l); len(rs) > 60 {
				l = string(rs[:59]) + "…"
			}
			r.Note = l
			break
		}
	}
	return r
}

// kernelLine tells whether l is a kernel message ("[   12.948832] ...").
func kernelLine(l string) bool {
	stamp, _, ok := strings.Cut(l, "] ")
	if !ok || !strings.HasPrefix(stamp, "[") {
		return false
	}
	return strings.Trim(stamp[1:], " 0123456789.") == ""
}
