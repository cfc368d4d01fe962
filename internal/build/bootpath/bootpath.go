// Package bootpath finds every driver a node needs before its root: it
// starts at the devices a board boots from (SD/eMMC controllers,
// ethernet), follows their parents and the supplier references the
// kernel's fw_devlink follows (clocks, resets, regulators, GPIOs, pin
// control, PHYs, ...), and for every device on the way finds its driver
// in the kernel: built in (an of_device_id table in the Image) or a
// module whose of: alias matches. A device with no driver anywhere
// defers its consumers' probes forever, silently; here it is an error
// before the card is written.
package bootpath

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"github.com/mkimage/mkimage/internal/build/devicetree"
)

// Kind says how a device gets its driver.
type Kind string

const (
	Module    Kind = "module"    // a .ko whose of: alias matches
	Builtin   Kind = "built-in"  // compiled into the Image
	Framework Kind = "framework" // handled without a driver of its own (see frameworkCompatibles)
	Missing   Kind = "missing"   // no driver: consumers wait forever
	Disabled  Kind = "disabled"  // status is not "okay": no device is made
)

// Row is one device on the boot path.
type Row struct {
	Path       string   `json:"path"`
	Compatible []string `json:"compatible"`
	Kind       Kind     `json:"kind"`
	// Modules are the modules that drive it (Kind Module).
	Modules []string `json:"modules,omitempty"`
	// Matched is the compatible string the driver matched, or why no
	// driver is needed (Kind Framework).
	Matched string `json:"matched,omitempty"`
	// Kconfig is the symbol that would build a missing driver, where the
	// kernel source was searched (see KconfigSymbol).
	Kconfig string `json:"kconfig,omitempty"`
	// Via says how the walk reached it: "boot device", "parent of X",
	// "vmmc-supply of X".
	Via string `json:"via"`
}

// Drivers is what a kernel can drive.
type Drivers interface {
	// Modules returns the module files whose aliases match modalias.
	Modules(modalias string) ([]string, error)
	// Builtin reports whether a compatible string has a built-in driver.
	Builtin(compatible string) bool
}

// Closure is the result of a walk.
type Closure struct {
	Rows []Row `json:"devices"`
}

// Modules returns the modules the boot path needs, sorted, each once.
func (c *Closure) Modules() []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range c.Rows {
		for _, m := range r.Modules {
			if !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Problems returns the rows that stop a boot: missing drivers and
// disabled suppliers.
func (c *Closure) Problems() []Row {
	var out []Row
	for _, r := range c.Rows {
		if r.Kind == Missing || r.Kind == Disabled {
			out = append(out, r)
		}
	}
	return out
}

// Err returns an error naming every problem, or nil.
func (c *Closure) Err() error {
	p := c.Problems()
	if len(p) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d device(s) on the boot path cannot probe:", len(p))
	for _, r := range p {
		what := "no driver in this kernel (built in or module) for compatible " + strings.Join(quote(r.Compatible), ", ")
		if r.Kind == Disabled {
			what = "disabled in the device tree (status is not \"okay\"), but needed"
		}
		if r.Kconfig != "" {
			what += "; enable CONFIG_" + r.Kconfig
		}
		fmt.Fprintf(&b, "\n  %s: %s (reached as %s)", r.Path, what, r.Via)
	}
	return fmt.Errorf("%s", b.String())
}

func quote(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

// frameworkCompatibles need no driver of their own: the kernel core or
// the parent's driver handles them.
var frameworkCompatibles = map[string]string{
	"syscon":                     "regmap made on demand by the syscon core",
	"snps,dwmac-mdio":            "MDIO bus registered by the stmmac driver",
	"ethernet-phy-ieee802.3-c22": "PHY: its driver is chosen by the PHY's ID at run time (board modules)",
	"ethernet-phy-ieee802.3-c45": "PHY: its driver is chosen by the PHY's ID at run time (board modules)",
	"mmc-card":                   "card node read by the MMC core",
}

// Walk computes the closure of the devices that the selectors name.
func Walk(t *devicetree.Tree, bootDevices []string, d Drivers) (*Closure, error) {
	w := &walker{t: t, d: d, seen: map[*devicetree.Node]bool{}, c: &Closure{}}
	for _, sel := range bootDevices {
		nodes, err := t.Select(sel)
		if err != nil {
			return nil, fmt.Errorf("boot device %s: %w", sel, err)
		}
		for _, n := range nodes {
			if !t.Enabled(n) && strings.HasPrefix(sel, "compatible:") {
				continue // a compatible names every instance; only enabled ones boot
			}
			if len(t.Compatible(n)) == 0 {
				// A port or slot node without a compatible (an mvpp2
				// ethernet port): its controller drives it, and its own
				// references (PHY, SFP, comphy) are the boot path too.
				if err := w.device(w.provider(n), "controller of boot device "+t.Path(n), true); err != nil {
					return nil, err
				}
				if err := w.suppliers(n, t.Path(n)); err != nil {
					return nil, err
				}
				if err := w.descendants(n); err != nil {
					return nil, err
				}
				continue
			}
			if err := w.device(n, "boot device", true); err != nil {
				return nil, err
			}
		}
	}
	return w.c, nil
}

type walker struct {
	t    *devicetree.Tree
	d    Drivers
	seen map[*devicetree.Node]bool
	c    *Closure
}

// provider is the device node that handles n: n itself when it has a
// compatible, else its nearest ancestor with one (pin groups belong to
// their pin controller, GPIO banks to theirs). Nil at the root.
func (w *walker) provider(n *devicetree.Node) *devicetree.Node {
	for ; n != nil && n != w.t.Root(); n = w.t.Parent(n) {
		if len(w.t.Compatible(n)) > 0 {
			return n
		}
	}
	return nil
}

// device adds a device node, its parents, its suppliers and, for boot
// devices, its enabled descendants.
func (w *walker) device(n *devicetree.Node, via string, boot bool) error {
	if n == nil || w.seen[n] {
		return nil
	}
	w.seen[n] = true
	path := w.t.Path(n)
	w.c.Rows = append(w.c.Rows, w.row(n, via))
	if !w.t.Enabled(n) {
		return nil // nothing probes; its suppliers do not matter
	}
	for p := w.t.Parent(n); p != nil && p != w.t.Root(); p = w.t.Parent(p) {
		if len(w.t.Compatible(p)) > 0 {
			if err := w.device(p, "parent of "+path, false); err != nil {
				return err
			}
			break // that parent's walk goes on upwards
		}
	}
	if err := w.suppliers(n, path); err != nil {
		return err
	}
	if boot {
		return w.descendants(n)
	}
	return nil
}

// descendants follows the enabled children of a boot device (card
// slots, MDIO buses and their PHYs, ethernet ports): their suppliers are
// the boot device's too.
func (w *walker) descendants(n *devicetree.Node) error {
	for _, c := range n.Children {
		if !w.t.Enabled(c) {
			continue
		}
		cp := w.t.Path(c)
		if len(w.t.Compatible(c)) > 0 && !w.seen[c] {
			w.seen[c] = true
			w.c.Rows = append(w.c.Rows, w.row(c, "child of "+w.t.Path(n)))
		}
		if err := w.suppliers(c, cp); err != nil {
			return err
		}
		if err := w.descendants(c); err != nil {
			return err
		}
	}
	return nil
}

func (w *walker) row(n *devicetree.Node, via string) Row {
	r := Row{Path: w.t.Path(n), Compatible: w.t.Compatible(n), Via: via}
	if !w.t.Enabled(n) {
		r.Kind = Disabled
		return r
	}
	// The most specific compatible with a driver decides, as the kernel
	// intends: a generic driver for a later compatible (dwmac-generic
	// for "snps,dwmac") loaded beside the specific one could bind first.
	for _, c := range r.Compatible {
		if w.d.Builtin(c) {
			r.Kind, r.Matched = Builtin, c
			return r
		}
		if mods, _ := w.d.Modules(deviceModalias(n, w.t, []string{c})); len(mods) > 0 {
			r.Kind, r.Modules, r.Matched = Module, mods, c
			return r
		}
	}
	for _, c := range r.Compatible {
		if why, ok := frameworkCompatibles[c]; ok {
			r.Kind, r.Matched = Framework, why
			return r
		}
	}
	r.Kind = Missing
	return r
}

// deviceModalias returns the modalias the kernel gives a device made from
// n (drivers/of/device.c), "of:N<name>T<type>C<compatible>C<...>", with
// the compatibles given: one at a time, the walk finds the driver of the
// most specific one.
func deviceModalias(n *devicetree.Node, t *devicetree.Tree, compat []string) string {
	name, _, _ := strings.Cut(n.Name, "@")
	typ, ok := t.String(n, "device_type")
	if !ok {
		typ = "(null)"
	}
	var b strings.Builder
	b.WriteString("of:N" + name + "T" + typ)
	for _, c := range compat {
		b.WriteString("C" + strings.ReplaceAll(c, " ", "_"))
	}
	return b.String()
}

// ImageBuiltin reports whether a raw arm64 kernel Image carries an
// of_device_id entry for a compatible: the struct holds name[32],
// type[32], compatible[128], so a built-in driver's (or an
// OF_DECLARE'd clock, irqchip or timer's) compatible sits NUL-padded in
// a 128-byte field, 8-byte aligned after 64 bytes of name and type.
// Plain string literals are not padded that way.
type ImageBuiltin struct {
	Image []byte
	cache map[string]bool
}

// Builtin implements the Drivers half for built-in drivers.
func (ib *ImageBuiltin) Builtin(compatible string) bool {
	if ib.cache == nil {
		ib.cache = map[string]bool{}
	}
	if v, ok := ib.cache[compatible]; ok {
		return v
	}
	v := ib.find(compatible)
	ib.cache[compatible] = v
	return v
}

func (ib *ImageBuiltin) find(compatible string) bool {
	if compatible == "" || len(compatible) >= 128 {
		return false
	}
	pat := make([]byte, 128)
	copy(pat, compatible)
	img := ib.Image
	for off := 0; ; {
		i := bytes.Index(img[off:], pat)
		if i < 0 {
			return false
		}
		at := off + i
		off = at + 1
		// The field starts 64 bytes into an 8-aligned struct whose
		// name and type fields are NUL-padded printable strings.
		if at < 64 || (at-64)%8 != 0 {
			continue
		}
		if printablePadded(img[at-64:at-32]) && printablePadded(img[at-32:at]) {
			return true
		}
	}
}

// printablePadded reports whether b is a printable string followed by
// NULs only (or all NULs).
func printablePadded(b []byte) bool {
	end := bytes.IndexByte(b, 0)
	if end < 0 {
		return false
	}
	for _, c := range b[:end] {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	for _, c := range b[end:] {
		if c != 0 {
			return false
		}
	}
	return true
}

// Kernel is the Drivers of a kernel: its module files' aliases and its
// Image's built-in of_device_id tables (Debian's 6.1 modules.builtin.modinfo
// lists no of: aliases, so the Image is the only complete source).
type Kernel struct {
	Mods  ModuleMatcher
	Image ImageBuiltin
}

// ModuleMatcher finds module files and built-in modules by modalias
// (kmod.Set does).
type ModuleMatcher interface {
	Match(modalias string) ([]string, error)
	MatchBuiltin(modalias string) []string
}

// Modules implements Drivers.
func (k *Kernel) Modules(modalias string) ([]string, error) {
	if k.Mods == nil {
		return nil, nil
	}
	m, err := k.Mods.Match(modalias)
	if err != nil {
		return nil, err
	}
	sort.Strings(m)
	out := m[:0]
	for i, x := range m {
		if i == 0 || x != m[i-1] {
			out = append(out, x)
		}
	}
	return out, nil
}

// Builtin implements Drivers: modules.builtin.modinfo's of: aliases where
// the kernel lists them, else the Image's of_device_id tables.
func (k *Kernel) Builtin(compatible string) bool {
	if k.Mods != nil && len(k.Mods.MatchBuiltin("of:NxT(null)C"+compatible)) > 0 {
		return true
	}
	return k.Image.Builtin(compatible)
}

// Driven returns the enabled devices of t that module drives, each as
// Walk would find its driver (the most specific compatible with a
// driver decides). It checks a board's data against its device tree,
// say that the watchdog module it names has a device to drive.
func Driven(t *devicetree.Tree, module string, d Drivers) []Row {
	w := &walker{t: t, d: d}
	want := strings.ReplaceAll(module, "-", "_")
	var out []Row
	for _, n := range t.Nodes() {
		if len(t.Compatible(n)) == 0 || !t.Enabled(n) {
			continue
		}
		r := w.row(n, "driven by "+module)
		for _, m := range r.Modules {
			if strings.ReplaceAll(m, "-", "_") == want {
				out = append(out, r)
				break
			}
		}
	}
	return out
}
