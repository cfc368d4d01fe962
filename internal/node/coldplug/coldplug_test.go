package coldplug

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/modalias"
)

// fakeSys is a sysfs /sys/bus tree in a temporary directory (device
// directories in place of the symlinks into /sys/devices).
type fakeSys struct {
	t   *testing.T
	dir string
}

// add creates a device directory BUS/devices/NAME with a uevent holding
// alias (none when empty), bound to a driver when bound.
func (s fakeSys) add(dev, alias string, bound bool) {
	s.t.Helper()
	d := filepath.Join(s.dir, dev)
	if err := os.MkdirAll(d, 0o755); err != nil {
		s.t.Fatal(err)
	}
	ev := "DRIVER=\n"
	if alias != "" {
		ev += "MODALIAS=" + alias + "\n"
	}
	if err := os.WriteFile(filepath.Join(d, "uevent"), []byte(ev), 0o644); err != nil {
		s.t.Fatal(err)
	}
	if bound {
		s.bind(dev)
	}
}

// addModaliasFile creates a device whose modalias is in its modalias
// file, as most buses show it, and whose uevent has none.
func (s fakeSys) addModaliasFile(dev, alias string) {
	s.t.Helper()
	s.add(dev, "", false)
	if err := os.WriteFile(filepath.Join(s.dir, dev, "modalias"), []byte(alias+"\n"), 0o444); err != nil {
		s.t.Fatal(err)
	}
}

func (s fakeSys) bind(dev string) {
	s.t.Helper()
	if err := os.Symlink("../../drivers/y", filepath.Join(s.dir, dev, "driver")); err != nil && !os.IsExist(err) {
		s.t.Fatal(err)
	}
}

// testColdplugIndex carries the QEMU virt chain and a regulator, as the
// builder would write them.
func testColdplugIndex(t *testing.T) *modalias.Index {
	t.Helper()
	src := `module failover /m/failover.ko failover
module fixed /m/fixed.ko fixed
module net_failover /m/net_failover.ko failover net_failover
module virtio_blk /m/virtio_blk.ko virtio_blk
module virtio_mmio /m/virtio_mmio.ko virtio_mmio
module virtio_net /m/virtio_net.ko failover net_failover virtio_net
alias of:N*T*Cregulator-fixed fixed
alias of:N*T*Cregulator-fixedC* fixed
alias of:N*T*Cvirtio,mmio virtio_mmio
alias virtio:d00000001v* virtio_net
alias virtio:d00000002v* virtio_blk
`
	x, err := modalias.Parse(strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// TestColdplugLoop: loading a driver adds devices that other carried
// drivers match, so the loop repeats; dependencies load first; a module
// that fails to load is logged and the loop goes on; it ends once no new
// device shows up, well within the budget.
func TestColdplugLoop(t *testing.T) {
	sys := fakeSys{t, t.TempDir()}
	sys.add("platform/devices/a000000.virtio_mmio", "of:Nvirtio_mmioT(null)Cvirtio,mmio", false)
	sys.add("platform/devices/a000200.virtio_mmio", "of:Nvirtio_mmioT(null)Cvirtio,mmio", false)
	sys.addModaliasFile("platform/devices/regulator-test", "of:Nregulator-testT(null)Cregulator-fixed")
	sys.add("amba/devices/9000000.pl011", "of:Npl011T(null)Carm,pl011Carm,primecell", true)
	sys.add("platform/devices/gpio-keys", "of:Ngpio-keysT(null)Cgpio-keys", false)
	sys.add("cpu/devices/cpu0", "", false) // no modalias: ignored

	var loaded []string
	load := func(p string) error {
		name := strings.TrimSuffix(filepath.Base(p), ".ko")
		loaded = append(loaded, name)
		switch name {
		case "virtio_mmio":
			// Probing binds both transports; each adds a virtio device.
			sys.bind("platform/devices/a000000.virtio_mmio")
			sys.bind("platform/devices/a000200.virtio_mmio")
			sys.add("virtio/devices/virtio0", "virtio:d00000002v554D4551", false)
			sys.add("virtio/devices/virtio1", "virtio:d00000001v554D4551", false)
		case "virtio_blk":
			sys.bind("virtio/devices/virtio0")
		case "failover":
			return fmt.Errorf("exec format error")
		case "fixed":
			return fmt.Errorf("load: %w", unix.EEXIST) // loaded already: fine
		}
		return nil
	}
	var log []string
	c := newLoader(sys.dir, testColdplugIndex(t), load, func(f string, a ...any) { log = append(log, fmt.Sprintf(f, a...)) })
	// A fake clock: each scan "takes" 10ms, sleeping advances it.
	now := time.Unix(0, 0)
	c.deadline = now.Add(5 * time.Second)
	clock := func() time.Time { now = now.Add(10 * time.Millisecond); return now }
	sleeps := 0
	sleep := func(d time.Duration) { now = now.Add(d); sleeps++ }
	if !c.settle(clock, sleep) {
		t.Fatal("did not settle within the budget")
	}
	if want := []string{"virtio_mmio", "fixed", "virtio_blk", "failover"}; !reflect.DeepEqual(loaded, want) {
		t.Errorf("loaded %v, want %v", loaded, want)
	}
	if sleeps > 6 {
		t.Errorf("%d polls for two rounds of devices", sleeps)
	}
	out := strings.Join(log, "\n")
	for _, want := range []string{
		"coldplug: loaded fixed for of:Nregulator-testT(null)Cregulator-fixed",
		"coldplug: loaded virtio_mmio for of:Nvirtio_mmioT(null)Cvirtio,mmio",
		"coldplug: loaded virtio_blk for virtio:d00000002v554D4551",
		"coldplug: loading failover for virtio:d00000001v554D4551 failed: exec format error",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	// virtio_net needs failover: it is not tried, nor is anything again.
	if c.modules != 3 {
		t.Errorf("counted %d modules loaded, want 3", c.modules)
	}
	aliases, count := c.unbound()
	wantUnbound := []string{"of:Ngpio-keysT(null)Cgpio-keys", "of:Nregulator-testT(null)Cregulator-fixed", "virtio:d00000001v554D4551"}
	if !reflect.DeepEqual(aliases, wantUnbound) || count["virtio:d00000001v554D4551"] != 1 {
		t.Errorf("unbound %v %v, want %v", aliases, count, wantUnbound)
	}
	log = nil
	c.report()
	if len(log) != 1 || !strings.Contains(log[0], "3 devices have no driver: of:Ngpio-keys") {
		t.Errorf("report: %q", log)
	}
	// Nothing new: another pass loads nothing.
	loaded = nil
	if devs, mods := c.pass(); devs != 0 || mods != 0 || loaded != nil {
		t.Errorf("a quiet pass saw %d devices, loaded %d %v", devs, mods, loaded)
	}
}

// TestColdplugBudget: a driver that keeps adding devices cannot hold the
// boot longer than the budget.
func TestColdplugBudget(t *testing.T) {
	sys := fakeSys{t, t.TempDir()}
	x, err := modalias.Parse(strings.NewReader("module virtio_mmio /m/virtio_mmio.ko virtio_mmio\nalias of:N*T*Cvirtio,mmio virtio_mmio\n"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	c := newLoader(sys.dir, x, func(string) error { return nil }, func(string, ...any) {})
	now := time.Unix(0, 0)
	c.deadline = now.Add(time.Second)
	clock := func() time.Time { return now }
	sleep := func(d time.Duration) {
		now = now.Add(d)
		n++
		sys.add(fmt.Sprintf("platform/devices/dev%d", n), "platform:endless", false)
	}
	if c.settle(clock, sleep) {
		t.Fatal("settled although devices kept appearing")
	}
	if now.After(time.Unix(1, 0).Add(poll)) {
		t.Errorf("ran until %v, budget 1s", now.Sub(time.Unix(0, 0)))
	}
}

func TestRegulators(t *testing.T) {
	dir := t.TempDir()
	for n, name := range map[string]string{"regulator.0": "regulator-dummy", "regulator.1": "test-3v3"} {
		os.MkdirAll(filepath.Join(dir, n), 0o755)
		os.WriteFile(filepath.Join(dir, n, "name"), []byte(name+"\n"), 0o644)
	}
	if got, want := regulators(dir), []string{"regulator.0=regulator-dummy", "regulator.1=test-3v3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("regulators = %v, want %v", got, want)
	}
}
