// Package boards holds the data of every supported board, one embedded
// TOML file each. Adding a board is adding a file here (and, where its
// bootloader needs new placement, a rule in that file).
package boards

import (
	"bytes"
	"embed"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/mkimage/mkimage/internal/bytesize"

	"github.com/BurntSushi/toml"

	"github.com/mkimage/mkimage/internal/build/bootblob"
	"github.com/mkimage/mkimage/internal/build/devicetree"
)

//go:embed *.toml
var files embed.FS

// Board is one board's facts.
type Board struct {
	Name        string `toml:"name" json:"name"`
	Description string `toml:"description" json:"description"`
	SoC         string `toml:"soc" json:"soc"`
	// DTB is the device tree path under the kernel's dtbs directory
	// ("vendor/file.dtb"); empty where firmware provides the tree.
	DTB     string   `toml:"dtb" json:"dtb,omitempty"`
	Console string   `toml:"console" json:"console"`
	Cmdline []string `toml:"cmdline" json:"cmdline"`
	// FirstPartition is where partition 1 starts, e.g. "4MiB".
	FirstPartition  string   `toml:"first_partition_offset" json:"first_partition_offset"`
	KernelFragments []string `toml:"kernel_fragments" json:"kernel_fragments"`
	// Modules are the kernel modules the node needs to reach its root
	// disk, loaded by name in every boot.
	Modules []string `toml:"modules" json:"modules"`
	// Coldplug modules are carried in the initramfs (with their
	// dependencies) and loaded only when a device present matches one
	// of their aliases: drivers for hardware a node may or may not have
	// (QEMU virt's virtio devices on a real board's image), or suppliers
	// (regulators, MDIO buses) whose absence would defer a boot device's
	// probe forever.
	Coldplug []string `toml:"coldplug" json:"coldplug,omitempty"`
	// Watchdog is the kernel module of the board's hardware watchdog
	// (Debian's kernel has them as modules). It is carried for coldplug,
	// so it loads when the device is there; nodeinit arms it only when
	// the command line asks (nodeinit.watchdog=, on updatable images).
	// The build checks it against the board's device tree.
	Watchdog    string     `toml:"watchdog" json:"watchdog,omitempty"`
	PXEDefaults []string   `toml:"pxe_defaults" json:"pxe_defaults"`
	Bootloader  Bootloader `toml:"bootloader" json:"bootloader"`
	// BootDevices select the device tree nodes the node needs before its
	// root (SD/eMMC controllers, ethernet): /path, alias:NAME or
	// compatible:STRING. The build follows their suppliers in the DTB
	// and puts every driver they need into the initramfs (package
	// bootpath); a device with no driver is a build error.
	BootDevices []string `toml:"boot_devices" json:"boot_devices,omitempty"`
	// DTFixups change the board's DTB before it goes on the card.
	DTFixups []devicetree.Fixup `toml:"dt_fixup" json:"dt_fixups,omitempty"`
	// Netboot is how the board's U-Boot fetches and boots a netboot
	// kernel (mkimage netboot).
	Netboot Netboot `toml:"netboot" json:"netboot"`

	firstPartition int64
}

// Bootloader says which bytes of the board's blob go where on the card.
type Bootloader struct {
	// Required: the card does not boot on the board without the blob.
	Required bool `toml:"required" json:"required"`
	// Blob describes the expected file for messages.
	Blob string `toml:"blob" json:"blob,omitempty"`
	// Format is the boot format the blob must have (a bootblob format
	// name, e.g. "amlogic-gxbb-sd"); files given are checked against it.
	Format  string  `toml:"format" json:"format,omitempty"`
	Writes  []Write `toml:"writes" json:"writes,omitempty"`
	Protect []Range `toml:"protect" json:"protect,omitempty"`
	// Debian names Debian arm64 files `mkimage bootloader` assembles the
	// blob from, where the format allows assembling one.
	Debian *DebianBlobs `toml:"debian" json:"debian,omitempty"`
}

// DebianBlobs are open bootloader parts from Debian packages, each
// "package:path/in/package".
type DebianBlobs struct {
	// BL33 is the U-Boot binary (mainline, distro boot).
	BL33 string `toml:"bl33" json:"bl33"`
	// BL31 is ARM Trusted Firmware's EL3 runtime.
	BL31 string `toml:"bl31" json:"bl31"`
}

// Write copies blob bytes [From, From+Length) to disk offset To. Length 0
// means "to the end of the blob".
type Write struct {
	From   int64 `toml:"from" json:"from"`
	Length int64 `toml:"length" json:"length,omitempty"`
	To     int64 `toml:"to" json:"to"`
}

// Range is a byte range of the disk the bootloader must never overwrite.
type Range struct {
	Offset int64  `toml:"offset" json:"offset"`
	Length int64  `toml:"length" json:"length"`
	Why    string `toml:"why" json:"why"`
}

// FirstPartitionOffset returns where partition 1 starts, in bytes.
func (b *Board) FirstPartitionOffset() int64 { return b.firstPartition }

// AllModules returns the modules loaded by name (a copy of Modules;
// Coldplug modules are not among them).
func (b *Board) AllModules() []string {
	return append([]string{}, b.Modules...)
}

// ColdplugModules returns the modules carried for coldplug: Coldplug and
// the watchdog's.
func (b *Board) ColdplugModules() []string {
	out := append([]string{}, b.Coldplug...)
	if b.Watchdog != "" {
		out = append(out, b.Watchdog)
	}
	return out
}

// Names lists the known boards, sorted.
func Names() []string {
	ents, _ := files.ReadDir(".")
	var names []string
	for _, e := range ents {
		names = append(names, strings.TrimSuffix(e.Name(), ".toml"))
	}
	sort.Strings(names)
	return names
}

// Get returns the named board, or an error listing the known ones.
func Get(name string) (*Board, error) {
	data, err := files.ReadFile(name + ".toml")
	if err != nil || strings.ContainsAny(name, "/\\") {
		return nil, fmt.Errorf("unknown board %q (known boards: %s)", name, strings.Join(Names(), ", "))
	}
	return Parse(name+".toml", data)
}

// All returns every known board, sorted by name.
func All() ([]*Board, error) {
	var all []*Board
	for _, n := range Names() {
		b, err := Get(n)
		if err != nil {
			return nil, err
		}
		all = append(all, b)
	}
	return all, nil
}

// Parse reads and validates one board file. Unknown keys are errors so a
// typo in a board file cannot silently drop a rule.
func Parse(file string, data []byte) (*Board, error) {
	var b Board
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&b)
	if err != nil {
		return nil, fmt.Errorf("board file %s: %w", file, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, fmt.Errorf("board file %s: unknown key %q", file, und[0].String())
	}
	if err := b.validate(); err != nil {
		return nil, fmt.Errorf("board file %s: %w", file, err)
	}
	return &b, nil
}

func (b *Board) validate() error {
	if b.Name == "" {
		return fmt.Errorf("name is empty")
	}
	if b.Console == "" {
		return fmt.Errorf("console is empty")
	}
	if b.DTB != "" && (path.IsAbs(b.DTB) || strings.Contains(b.DTB, "..") || !strings.HasSuffix(b.DTB, ".dtb")) {
		return fmt.Errorf("dtb %q: want a relative vendor/file.dtb path", b.DTB)
	}
	if b.DTB != "" && len(b.BootDevices) == 0 {
		return fmt.Errorf("boot_devices is empty: name the SD/eMMC and ethernet nodes of %s so the build can check their drivers", b.DTB)
	}
	if b.DTB == "" && (len(b.BootDevices) > 0 || len(b.DTFixups) > 0) {
		return fmt.Errorf("boot_devices and dt_fixup need a dtb (this board's device tree comes from its firmware)")
	}
	for _, sel := range b.BootDevices {
		if err := devicetree.ValidSelector(sel); err != nil {
			return fmt.Errorf("boot_devices: %w", err)
		}
	}
	for i, f := range b.DTFixups {
		if err := f.Check(); err != nil {
			return fmt.Errorf("dt_fixup %d: %w", i+1, err)
		}
	}
	off, err := bytesize.Parse(b.FirstPartition)
	if err != nil {
		return fmt.Errorf("first_partition_offset: %w", err)
	}
	if off < 1<<20 || off%(1<<20) != 0 {
		return fmt.Errorf("first_partition_offset %s: want a multiple of 1 MiB, at least 1 MiB", b.FirstPartition)
	}
	b.firstPartition = off
	if len(b.Modules) == 0 {
		return fmt.Errorf("modules is empty: the node could not reach its root disk")
	}
	for _, c := range b.Coldplug {
		for _, m := range b.Modules {
			if strings.ReplaceAll(c, "-", "_") == strings.ReplaceAll(m, "-", "_") {
				return fmt.Errorf("coldplug module %s is in modules too: list it once", c)
			}
		}
	}
	for _, m := range append(append([]string{}, b.Modules...), b.Coldplug...) {
		if b.Watchdog != "" && strings.ReplaceAll(b.Watchdog, "-", "_") == strings.ReplaceAll(m, "-", "_") {
			return fmt.Errorf("watchdog module %s is in modules or coldplug too: name it once, as watchdog", b.Watchdog)
		}
	}
	if b.Bootloader.Required && len(b.Bootloader.Writes) == 0 {
		return fmt.Errorf("bootloader is required but has no writes")
	}
	for i, w := range b.Bootloader.Writes {
		if w.From < 0 || w.To < 0 || w.Length < 0 {
			return fmt.Errorf("bootloader write %d: negative offset or length", i)
		}
		if w.To >= off {
			return fmt.Errorf("bootloader write %d starts at %d, inside partition 1 (%d)", i, w.To, off)
		}
	}
	if len(b.Bootloader.Writes) > 0 {
		if b.Bootloader.Format == "" {
			return fmt.Errorf("bootloader has writes but no format (one of %s)", strings.Join(bootblob.Formats(), ", "))
		}
		if _, err := bootblob.Lookup(b.Bootloader.Format); err != nil {
			return fmt.Errorf("bootloader: %w", err)
		}
	}
	if d := b.Bootloader.Debian; d != nil {
		for _, f := range []string{d.BL33, d.BL31} {
			if pkg, p, ok := strings.Cut(f, ":"); !ok || pkg == "" || p == "" || path.IsAbs(p) {
				return fmt.Errorf("bootloader.debian: %q: want package:path/in/package", f)
			}
		}
	}
	if err := b.Netboot.validate(); err != nil {
		return err
	}
	for i, p := range b.Bootloader.Protect {
		if p.Offset < 0 || p.Length <= 0 {
			return fmt.Errorf("bootloader protect %d: bad range", i)
		}
	}
	return nil
}
