package builder

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/internal/fstree"
)

func TestEpochFromEnv(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want time.Time
		ok   bool
	}{
		{"", time.Unix(0, 0), true},
		{"1700000000", time.Unix(1700000000, 0), true},
		{"-5", time.Time{}, false},
		{"yesterday", time.Time{}, false},
	} {
		t.Setenv("SOURCE_DATE_EPOCH", tc.env)
		got, err := EpochFromEnv()
		if (err == nil) != tc.ok || !got.Equal(tc.want) {
			t.Errorf("SOURCE_DATE_EPOCH=%q: %v, %v", tc.env, got, err)
		}
		if err != nil && !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
			t.Errorf("error does not name the variable: %v", err)
		}
	}
}

func TestFillRejects(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{}, "no board"},
		{Options{Board: "qemu-virt", Backend: "ext4"}, "ext4"},
		{Options{Board: "qemu-virt", Compress: "bz2"}, "bz2"},
		{Options{Board: "qemu-virt", Rootfs: "minimal", Slim: true}, "--slim: only for a Debian root (--rootfs debian[:SUITE]), not --rootfs minimal"},
		{Options{Board: "qemu-virt", Rootfs: "root.tar", Preconfigure: true}, "--preconfigure: only for a Debian root"},
	} {
		if err := tc.o.fill(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %q", tc.o, err, tc.want)
		}
	}
	o := Options{Board: "qemu-virt"}
	if err := o.fill(); err != nil || o.Rootfs != "debian" || o.Backend != "native" || o.BootSize != 256<<20 || o.Headroom != 256<<20 {
		t.Fatalf("defaults: %+v, %v", o, err)
	}
	for _, rootfs := range []string{"", "debian", "debian:trixie"} {
		o := Options{Board: "qemu-virt", Rootfs: rootfs, Slim: true}
		if err := o.fill(); err != nil {
			t.Errorf("--slim --rootfs %q: %v", rootfs, err)
		}
	}
}

func TestCmdlineFindsRootByLabel(t *testing.T) {
	for _, name := range boards.Names() {
		b, _ := boards.Get(name)
		c := cmdline(b)
		if !strings.Contains(c, "console="+b.Console) || !strings.Contains(c, "root=LABEL="+rootLabel) {
			t.Errorf("%s: cmdline %q", name, c)
		}
	}
}

func TestHumanAndUpTo(t *testing.T) {
	for in, want := range map[int64]string{4 << 20: "4 MiB", 3 << 30: "3 GiB", 1536 << 10: "1.5 MiB", 2048: "2.0 KiB", 12: "12 B"} {
		if got := human(in); got != want {
			t.Errorf("human(%d) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"bin": "..", "usr/bin": "../..", "usr/local/sbin": "../../.."} {
		if got := upTo(in); got != want {
			t.Errorf("upTo(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPrintSlim: a slim root's plan says so and where the filters stay.
func TestPrintSlim(t *testing.T) {
	var b strings.Builder
	(&Plan{Root: RootPlan{SlimFilters: []string{"path-exclude /usr/share/man/*"}}}).Print(&b)
	if !strings.Contains(b.String(), "slim:     no man pages, info, docs (but copyright) or non-English translations: 1 dpkg path filters, kept in /etc/dpkg/dpkg.cfg.d/mkimage-slim\n") {
		t.Errorf("plan:\n%s", b.String())
	}
	b.Reset()
	(&Plan{}).Print(&b)
	if strings.Contains(b.String(), "slim") {
		t.Errorf("a full root's plan mentions slim:\n%s", b.String())
	}
}

// TestWatchdogTakeover: only an updatable image whose root the build
// makes asks nodeinit to arm the watchdog; a Debian root's systemd gets
// the drop-in that makes it feed the watchdog.
func TestWatchdogTakeover(t *testing.T) {
	for _, tt := range []struct {
		rootfs, keys string
		secs         int
		want         bool
		dropIn       string
	}{
		{"minimal", "k.pub", 20, true, ""},
		{"debian", "k.pub", 45, true, "[Manager]\nRuntimeWatchdogSec=45\n"},
		{"debian:trixie", "k.pub", 45, true, "RuntimeWatchdogSec=45"},
		{"/srv/root.tar", "k.pub", 20, false, ""}, // its init may not feed it
		{"minimal", "", 20, false, ""},            // not updatable
		{"debian", "k.pub", 0, false, ""},         // --watchdog 0
	} {
		in := &inputs{root: fstree.New(time.Unix(0, 0))}
		o := &Options{Rootfs: tt.rootfs, UpdateKeys: tt.keys, Watchdog: tt.secs, Log: io.Discard}
		got, err := in.watchdogTakeover(o)
		if err != nil || got != tt.want {
			t.Errorf("%s keys %q %ds: %v, %v; want %v", tt.rootfs, tt.keys, tt.secs, got, err, tt.want)
		}
		n, ok := in.root.Lookup(systemdWatchdog)
		if ok != (tt.dropIn != "") {
			t.Errorf("%s keys %q %ds: drop-in present %v", tt.rootfs, tt.keys, tt.secs, ok)
		}
		if ok {
			b, err := fstree.ReadAll(n.Content)
			if err != nil || !strings.Contains(string(b), tt.dropIn) {
				t.Errorf("%s: drop-in %q (%v) lacks %q", tt.rootfs, b, err, tt.dropIn)
			}
		}
	}
}
