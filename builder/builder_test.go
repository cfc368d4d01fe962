package builder

import (
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/boards"
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
	} {
		if err := tc.o.fill(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %q", tc.o, err, tc.want)
		}
	}
	o := Options{Board: "qemu-virt"}
	if err := o.fill(); err != nil || o.Rootfs != "debian" || o.Backend != "native" || o.BootSize != 256<<20 || o.Headroom != 256<<20 {
		t.Fatalf("defaults: %+v, %v", o, err)
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
