// Package coldplug loads the modules the builder carried for coldplug
// (initramfs.ColdplugIndex, package modalias) when a device present
// needs them.
//
// Every device a bus could match a driver to shows a modalias (its
// modalias file, or MODALIAS= in its uevent; see scan); the modules whose
// aliases match it are loaded, dependencies first, as udev would. Loading
// a driver adds devices (virtio_mmio binds a transport, which adds the
// virtio device virtio_blk matches; a bound regulator lets an MMC
// controller's deferred probe finish, which adds the card), so the scan
// repeats until no new device has appeared for a moment, within
// nodeinit.coldplug seconds. The root search goes on scanning for the
// rest of that budget, since an SD card shows up well after its
// controller.
package coldplug

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/modalias"
	"github.com/mkimage/mkimage/internal/node/modload"
)

const (
	// quiet is how long no new device may appear before the coldplug
	// step ends; poll is the time between scans.
	quiet = 200 * time.Millisecond
	poll  = 50 * time.Millisecond
)

// Loader loads carried modules for the devices present.
type Loader struct {
	buses string // /sys/bus
	idx   *modalias.Index
	// load loads one module file; an error wrapping unix.EEXIST means
	// it was loaded already.
	load func(path string) error
	say  func(format string, a ...any)

	deadline time.Time
	tried    map[string]error  // module name → nil once loaded, or why it failed
	seen     map[string]string // device directory → its modalias, "" for none
	modules  int               // modules loaded by coldplug
	scans    int
}

func newLoader(buses string, idx *modalias.Index, load func(string) error, say func(string, ...any)) *Loader {
	return &Loader{buses: buses, idx: idx, load: load, say: say, tried: map[string]error{}, seen: map[string]string{}}
}

// loadedAlready marks the modules in /proc/modules as loaded, so those
// loaded by name are not loaded again.
func (c *Loader) loadedAlready(procModules string) {
	b, err := os.ReadFile(procModules)
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		if name, _, _ := strings.Cut(line, " "); name != "" {
			c.tried[name] = nil
		}
	}
}

// scan returns the modalias of every device not seen before, by its
// directory under /sys/bus/BUS/devices. Every device a driver can bind
// sits on a bus, and only bus devices have a modalias; listing the buses
// reads a hundred small files where walking /sys/devices would read
// thousands of directories, which under emulation takes seconds.
func (c *Loader) scan() map[string]string {
	c.scans++
	found := map[string]string{}
	buses, _ := os.ReadDir(c.buses)
	for _, bus := range buses {
		dir := filepath.Join(c.buses, bus.Name(), "devices")
		devs, _ := os.ReadDir(dir)
		for _, d := range devs {
			p := filepath.Join(dir, d.Name())
			if _, ok := c.seen[p]; ok {
				continue
			}
			v, err := readModalias(p)
			if err != nil {
				continue // gone, or not ready yet
			}
			// A device's modalias never changes, nor does having none
			// (memory, workqueue devices): each is read once.
			c.seen[p] = v
			if v != "" {
				found[p] = v
			}
		}
	}
	return found
}

// readModalias returns the modalias of the device directory dir: its
// modalias file, which is cheaper for the kernel to make than the whole
// uevent, or else its uevent's MODALIAS= (the MMC bus has only that).
func readModalias(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "modalias"))
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if b, err = os.ReadFile(filepath.Join(dir, "uevent")); err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MODALIAS="); ok {
			return v, nil
		}
	}
	return "", nil
}

// pass scans once and loads the modules the new devices match. It
// returns how many new devices it saw and modules it loaded.
func (c *Loader) pass() (devices, loaded int) {
	found := c.scan()
	dirs := make([]string, 0, len(found))
	for d := range found {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	for _, d := range dirs {
		for _, name := range c.idx.Lookup(found[d]) {
			loaded += c.loadWithDeps(name, found[d])
		}
	}
	return len(found), loaded
}

// loadWithDeps loads name after the modules it needs, each once; a
// failure is logged, remembered and not tried again. It returns how many
// modules it loaded.
func (c *Loader) loadWithDeps(name, why string) (n int) {
	defer func() { c.modules += n }()
	if _, done := c.tried[name]; done {
		return 0
	}
	m, ok := c.idx.Module(name)
	if !ok {
		return 0
	}
	self := false // name itself is loaded; soft "post:" ones may follow
	for _, dep := range m.Load {
		err, done := c.tried[dep]
		if !done {
			d, _ := c.idx.Module(dep)
			start := time.Now()
			err = c.load(d.Path)
			if errors.Is(err, unix.EEXIST) {
				err = nil
			}
			c.tried[dep] = err
			// The time is mostly the probes the module's drivers run.
			took := time.Since(start).Round(time.Millisecond)
			switch {
			case err != nil:
				c.say("coldplug: loading %s for %s failed: %v", dep, why, err)
			case dep == name:
				c.say("coldplug: loaded %s for %s (%v)", dep, why, took)
				n++
			default:
				c.say("coldplug: loaded %s (needed by %s) (%v)", dep, name, took)
				n++
			}
		}
		self = self || dep == name
		if err != nil && !self {
			// name would only fail on the missing symbols.
			c.tried[name] = fmt.Errorf("needs %s, which failed", dep)
			if done {
				c.say("coldplug: not loading %s for %s: it needs %s, which failed", name, why, dep)
			}
			return n
		}
	}
	return n
}

// withAlias counts the devices seen that have a modalias.
func (c *Loader) withAlias() int {
	n := 0
	for _, a := range c.seen {
		if a != "" {
			n++
		}
	}
	return n
}

// settle scans until no new device has appeared for quiet, or
// until the deadline. It reports whether the devices settled.
func (c *Loader) settle(now func() time.Time, sleep func(time.Duration)) bool {
	last := now()
	for {
		devs, mods := c.pass()
		t := now()
		if devs > 0 || mods > 0 {
			last = t
		}
		if t.Sub(last) >= quiet {
			return true
		}
		if !t.Before(c.deadline) {
			return false
		}
		sleep(poll)
	}
}

// unbound returns the modaliases of devices that have none bound, each
// once, sorted, with how many devices show it.
func (c *Loader) unbound() (aliases []string, count map[string]int) {
	count = map[string]int{}
	for dir, alias := range c.seen {
		if alias == "" {
			continue
		}
		if _, err := os.Lstat(filepath.Join(dir, "driver")); err == nil {
			continue
		}
		if _, err := os.Stat(dir); err != nil {
			continue // gone
		}
		if count[alias] == 0 {
			aliases = append(aliases, alias)
		}
		count[alias]++
	}
	sort.Strings(aliases)
	return aliases, count
}

// report says, briefly, which devices still have no driver.
func (c *Loader) report() {
	aliases, count := c.unbound()
	if len(aliases) == 0 {
		c.say("coldplug: every device with a modalias has a driver")
		return
	}
	const show, width = 5, 60
	var parts []string
	total := 0
	for i, a := range aliases {
		total += count[a]
		if i >= show {
			continue
		}
		n := count[a]
		if len(a) > width {
			a = a[:width] + "..."
		}
		if n > 1 {
			a = fmt.Sprintf("%s (x%d)", a, n)
		}
		parts = append(parts, a)
	}
	more := ""
	if len(aliases) > show {
		more = fmt.Sprintf(" and %d more", len(aliases)-show)
	}
	c.say("coldplug: %d devices have no driver: %s%s", total, strings.Join(parts, ", "), more)
}

// Run is nodeinit's coldplug step: after the modules loaded by name, it
// loads the carried ones (the index at path index) the devices present
// match, for up to budget. It returns the loader for More, or nil when
// it did not run: no index, an unreadable one (the modules loaded by
// name may still reach the root) or a budget of 0.
func Run(index string, budget time.Duration, logf func(string, ...any)) *Loader {
	b, err := os.ReadFile(index)
	if errors.Is(err, os.ErrNotExist) {
		return nil // nothing carried for coldplug
	}
	var idx *modalias.Index
	if err == nil {
		idx, err = modalias.Parse(bytes.NewReader(b))
	}
	if err != nil {
		logf("coldplug: %s: %v; loading nothing by coldplug", index, err)
		return nil
	}
	if budget == 0 {
		logf("coldplug: off (nodeinit.coldplug=0); %d modules carried are not loaded", len(idx.Modules))
		return nil
	}
	start := time.Now()
	c := newLoader("/sys/bus", idx, modload.Load, logf)
	c.loadedAlready("/proc/modules")
	c.deadline = start.Add(budget)
	settled := c.settle(time.Now, time.Sleep)
	how := "devices settled"
	if !settled {
		how = "budget spent"
	}
	logf("coldplug: loaded %d of %d modules carried for %d devices in %v (%d scans, %s)", c.modules, len(idx.Modules), c.withAlias(), time.Since(start).Round(time.Millisecond), c.scans, how)
	c.report()
	if names := regulators("/sys/class/regulator"); len(names) > 0 {
		logf("coldplug: regulators: %s", strings.Join(names, ", "))
	}
	return c
}

// regulators lists the names of the regulators bound, as
// /sys/class/regulator shows them.
func regulators(class string) []string {
	ents, err := os.ReadDir(class)
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(class, e.Name(), "name"))
		if err != nil {
			continue
		}
		names = append(names, e.Name()+"="+strings.TrimSpace(string(b)))
	}
	return names
}

// More runs one more coldplug pass while the budget lasts; the root
// search calls it as it polls. A nil Loader (coldplug did not run) does
// nothing.
func (c *Loader) More() {
	if c != nil && time.Now().Before(c.deadline) {
		c.pass()
	}
}
