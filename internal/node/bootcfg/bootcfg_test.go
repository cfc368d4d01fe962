package bootcfg

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestConfig(t *testing.T) {
	tests := []struct {
		cmdline string
		want    Config
		err     string
	}{
		{"console=ttyAMA0 root=LABEL=root rootwait", Config{Root: "LABEL=root", RootFSType: "btrfs", Init: "/sbin/init", Timeout: 30 * time.Second, Coldplug: 5 * time.Second}, ""},
		{`root=/dev/mmcblk0p2 rootflags="subvol=@,noatime" init=/lib/systemd/systemd nodeinit.timeout=90 nodeinit.rescue`,
			Config{Root: "/dev/mmcblk0p2", RootFSType: "btrfs", RootFlags: "subvol=@,noatime", Init: "/lib/systemd/systemd", Timeout: 90 * time.Second, Rescue: true, Coldplug: 5 * time.Second}, ""},
		{"nodeinit.timeout=1m30s rootfstype=ext4", Config{RootFSType: "ext4", Init: "/sbin/init", Timeout: 90 * time.Second, Coldplug: 5 * time.Second}, ""},
		{"nodeinit.timeout=soon", Config{}, "nodeinit.timeout=soon"},
		{"nodeinit.coldplug=0", Config{RootFSType: "btrfs", Init: "/sbin/init", Timeout: 30 * time.Second}, ""},
		{"nodeinit.coldplug=1500ms", Config{RootFSType: "btrfs", Init: "/sbin/init", Timeout: 30 * time.Second, Coldplug: 1500 * time.Millisecond}, ""},
		{"nodeinit.coldplug=-1", Config{}, "nodeinit.coldplug=-1"},
		{"root=LABEL=root nodeinit.preconfigure", Config{Root: "LABEL=root", RootFSType: "btrfs", Init: "/sbin/init", Timeout: 30 * time.Second, Preconfigure: true, Coldplug: 5 * time.Second}, ""},
		{"console=ttyAMA0 rootwait root=http://:80/root.img netroot.sha256=ab12",
			Config{Root: "http://:80/root.img", NetrootSHA256: "ab12", RootFSType: "btrfs", Init: "/sbin/init", Timeout: 30 * time.Second, Coldplug: 5 * time.Second}, ""},
		{"root=LABEL=root netinstall=http://:80/node.img netinstall.sha256=cd34 netinstall.disk=mmcblk1",
			Config{Root: "LABEL=root", Netinstall: "http://:80/node.img", NetinstallSHA256: "cd34", NetinstallDisk: "mmcblk1", RootFSType: "btrfs", Init: "/sbin/init", Timeout: 30 * time.Second, Coldplug: 5 * time.Second}, ""},
		{"root=LABEL=root panic=10 nodeinit.watchdog=15",
			Config{Root: "LABEL=root", Watchdog: 15 * time.Second, RootFSType: "btrfs", Init: "/sbin/init", Timeout: 30 * time.Second, Coldplug: 5 * time.Second}, ""},
		{"nodeinit.watchdog=1m", Config{Watchdog: time.Minute, RootFSType: "btrfs", Init: "/sbin/init", Timeout: 30 * time.Second, Coldplug: 5 * time.Second}, ""},
		{"nodeinit.watchdog=0", Config{RootFSType: "btrfs", Init: "/sbin/init", Timeout: 30 * time.Second, Coldplug: 5 * time.Second}, ""},
		{"nodeinit.watchdog=soon", Config{}, "nodeinit.watchdog=soon"},
		{"nodeinit.watchdog=-5", Config{}, "nodeinit.watchdog=-5"},
		// The boot script appends the version after boot.env's line.
		{"root=LABEL=root panic=10 mkimage.version=0123456789abcdef",
			Config{Root: "LABEL=root", Version: "0123456789abcdef", RootFSType: "btrfs", Init: "/sbin/init", Timeout: 30 * time.Second, Coldplug: 5 * time.Second}, ""},
	}
	for _, tt := range tests {
		c := Default()
		err := c.Apply(Split(tt.cmdline))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err = %v, want %q", tt.cmdline, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(c, tt.want) {
			t.Errorf("%q: got %+v, %v; want %+v", tt.cmdline, c, err, tt.want)
		}
	}
}

func TestIsNetRoot(t *testing.T) {
	for spec, want := range map[string]bool{
		"http://:80/root.img": true, "https://10.0.0.1/r.img": true,
		"LABEL=root": false, "/dev/vda2": false, "": false, "httpx": false,
	} {
		if got := IsNetRoot(spec); got != want {
			t.Errorf("IsNetRoot(%q) = %v", spec, got)
		}
	}
}

// TestLoad: the baked defaults apply first and the command line wins; a
// missing defaults file is no error; a bad option names its file.
func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cmdline := write("cmdline", "console=ttyAMA0 root=LABEL=root nodeinit.timeout=90\n")
	for _, tt := range []struct {
		name, defaults string
		want           time.Duration
		wantFlags, err string
	}{
		{"baked", "nodeinit.timeout=5 rootflags=noatime\n", 90 * time.Second, "noatime", ""},
		{"none", "", 90 * time.Second, "", ""},
		{"bad", "nodeinit.timeout=soon\n", 0, "", "defaults-bad: nodeinit.timeout=soon"},
	} {
		defaults := filepath.Join(dir, "missing")
		if tt.defaults != "" {
			defaults = write("defaults-"+tt.name, tt.defaults)
		}
		var lines []string
		c := Default()
		err := c.Load(defaults, cmdline, func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) })
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: err = %v, want %q", tt.name, err, tt.err)
			}
			continue
		}
		if err != nil || c.Timeout != tt.want || c.RootFlags != tt.wantFlags || c.Root != "LABEL=root" {
			t.Errorf("%s: %+v, %v", tt.name, c, err)
		}
		if len(lines) != 1 || !strings.HasPrefix(lines[0], `config: root="LABEL=root"`) {
			t.Errorf("%s: logged %q", tt.name, lines)
		}
	}
}
