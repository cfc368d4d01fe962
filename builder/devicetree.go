package builder

import (
	"context"
	"fmt"
	"io/fs"
	"path"

	"github.com/mkimage/mkimage/internal/cachedir"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/internal/build/bootpath"
	"github.com/mkimage/mkimage/internal/build/devicetree"
	"github.com/mkimage/mkimage/internal/build/kbuild"
	"github.com/mkimage/mkimage/internal/build/kmod"
	"github.com/mkimage/mkimage/internal/build/rootfs"
)

// BootPathResult is what `mkimage bootpath` prints: the board's device
// tree as it goes on the card and the drivers its boot devices need.
type BootPathResult struct {
	Board   string             `json:"board"`
	Kernel  string             `json:"kernel"`
	DTB     string             `json:"dtb"`
	Fixups  []devicetree.Fixup `json:"fixups,omitempty"`
	Closure *bootpath.Closure  `json:"closure"`
	Modules []string           `json:"modules"`
	// Watchdog are the devices the board's watchdog module drives (see
	// watchdogDevices).
	Watchdog []bootpath.Row `json:"watchdog,omitempty"`
}

// BootPath resolves the kernel of o (as a build would) and checks the
// board's boot path. A missing driver is reported in the result, not as
// an error, so the table can show it; with a kernel source (directory or
// tarball) it names the Kconfig symbol that would build it.
func BootPath(ctx context.Context, o Options, kernelSrc string) (*BootPathResult, error) {
	if err := o.fill(); err != nil {
		return nil, err
	}
	b, err := boards.Get(o.Board)
	if err != nil {
		return nil, err
	}
	if b.DTB == "" {
		return nil, fmt.Errorf("board %s has no device tree on the card (its firmware provides one): nothing to check", b.Name)
	}
	in := &inputs{board: b}
	if err := in.loadKernel(ctx, &o); err != nil {
		return nil, err
	}
	_, cl, wd, err := deviceTree(b, in.kernel)
	if err != nil {
		return nil, err
	}
	if kernelSrc != "" && len(cl.Problems()) > 0 {
		cache := cachedir.Dir("kernel")
		src, err := kbuild.OpenSource(kernelSrc, cache, o.Log)
		if err != nil {
			return nil, fmt.Errorf("--kernel-src: %w", err)
		}
		cl.NameSymbols(src.Dir)
	}
	return &BootPathResult{Board: b.Name, Kernel: in.kernel.Version, DTB: b.DTB, Fixups: b.DTFixups, Closure: cl, Modules: cl.Modules(), Watchdog: wd}, nil
}

// kernelModules opens kernel k's modules.
func kernelModules(k *rootfs.Kernel) (*kmod.Set, error) {
	mods, err := fs.Sub(k.Modules.FS(), path.Join("lib/modules", k.Version))
	if err != nil {
		return nil, err
	}
	set, err := kmod.Open(mods)
	if err != nil {
		return nil, fmt.Errorf("kernel %s modules: %w", k.Version, err)
	}
	return set, nil
}

// deviceTree applies the board's fix-ups to its DTB, walks the boot path
// against the kernel's drivers and finds the watchdog's devices. It
// returns the DTB for the card.
func deviceTree(b *boards.Board, k *rootfs.Kernel) ([]byte, *bootpath.Closure, []bootpath.Row, error) {
	raw, ok := k.DTBs[b.DTB]
	if !ok {
		return nil, nil, nil, fmt.Errorf("kernel %s has no device tree %s for board %s", k.Version, b.DTB, b.Name)
	}
	t, err := devicetree.Parse(raw)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", b.DTB, err)
	}
	dtb := raw
	if len(b.DTFixups) > 0 {
		if err := t.Apply(b.DTFixups); err != nil {
			return nil, nil, nil, fmt.Errorf("board %s, %s of kernel %s: %w", b.Name, b.DTB, k.Version, err)
		}
		if dtb, err = t.Bytes(); err != nil {
			return nil, nil, nil, err
		}
	}
	set, err := kernelModules(k)
	if err != nil {
		return nil, nil, nil, err
	}
	drivers := &bootpath.Kernel{Mods: set, Image: bootpath.ImageBuiltin{Image: k.Image}}
	cl, err := bootpath.Walk(t, b.BootDevices, drivers)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("board %s, %s: %w", b.Name, b.DTB, err)
	}
	wd, err := watchdogDevices(b, k, t, set, drivers)
	if err != nil {
		return nil, nil, nil, err
	}
	return dtb, cl, wd, nil
}

// watchdogDevices returns the devices of the board's device tree that its
// watchdog module drives. A module file that drives none is wrong board
// data, an error; a kernel that has no such module file (built in, or an
// own build without it) is not checked here (see watchdogModule).
func watchdogDevices(b *boards.Board, k *rootfs.Kernel, t *devicetree.Tree, set *kmod.Set, drivers bootpath.Drivers) ([]bootpath.Row, error) {
	if b.Watchdog == "" {
		return nil, nil
	}
	if _, ok := set.Module(b.Watchdog); !ok {
		return nil, nil
	}
	rows := bootpath.Driven(t, b.Watchdog, drivers)
	if len(rows) == 0 {
		return nil, fmt.Errorf("board %s: watchdog module %s (kernel %s) drives no enabled device of %s: fix the board's watchdog key", b.Name, b.Watchdog, k.Version, b.DTB)
	}
	return rows, nil
}

// watchdogModule returns the board's watchdog module when kernel k has it
// as a module file, to carry for coldplug; built in, it needs no
// carrying. A kernel without it is a warning, not an error: the node
// boots without a watchdog and says so (warned only where the command
// line asks for one).
func (in *inputs) watchdogModule(o *Options) (string, error) {
	name := in.board.Watchdog
	if name == "" {
		return "", nil
	}
	set, err := kernelModules(in.kernel)
	if err != nil {
		return "", err
	}
	if _, ok := set.Module(name); ok {
		return name, nil
	}
	if !set.Builtin(name) && updatable(o) && o.Watchdog > 0 {
		in.warnings = append(in.warnings, fmt.Sprintf("kernel %s has no watchdog driver %s for board %s: the node boots without a hardware watchdog", in.kernel.Version, name, in.board.Name))
	}
	return "", nil
}

// BootModules returns the modules a board needs before its root with
// kernel k: its own list (board data) and what its device tree's boot
// path needs. A device without a driver is an error.
func BootModules(b *boards.Board, k *rootfs.Kernel) ([]string, error) {
	_, mods, err := bootPath(b, k)
	return mods, err
}

// bootPath returns the DTB for the card and the modules the node needs
// before its root.
func bootPath(b *boards.Board, k *rootfs.Kernel) ([]byte, []string, error) {
	want := b.AllModules()
	if b.DTB == "" {
		return nil, want, nil
	}
	dtb, cl, _, err := deviceTree(b, k)
	if err != nil {
		return nil, nil, err
	}
	if err := cl.Err(); err != nil {
		return nil, nil, fmt.Errorf("board %s with kernel %s would not reach its root: %w\n(see `mkimage bootpath --board %s`)", b.Name, k.Version, err, b.Name)
	}
	return dtb, append(want, cl.Modules()...), nil
}

// loadDeviceTree puts the fixed DTB and the boot path's modules into the
// build; a device on the boot path without a driver stops it here.
func (in *inputs) loadDeviceTree(o *Options) error {
	dtb, mods, err := bootPath(in.board, in.kernel)
	if err != nil {
		return err
	}
	in.dtb, in.bootModules = dtb, mods
	if dtb != nil {
		logf(o, "boot path of %s: modules %v", in.board.DTB, mods)
	}
	return nil
}
