package boards

import (
	"strings"
	"testing"
)

func TestAllBoardsLoad(t *testing.T) {
	all, err := All()
	if err != nil {
		t.Fatal(err)
	}
	names := strings.Join(Names(), " ")
	for _, want := range []string{"odroid-c2", "macchiatobin", "qemu-virt"} {
		if !strings.Contains(names, want) {
			t.Errorf("board %s missing (have %s)", want, names)
		}
	}
	for _, b := range all {
		// A board whose device tree goes on the card names its boot
		// devices, so every build checks their drivers.
		if b.DTB != "" && len(b.BootDevices) == 0 {
			t.Errorf("%s: no boot_devices", b.Name)
		}
		// Every board names its watchdog: an updatable image's version
		// that hangs is reset by it (the build checks it against the
		// board's device tree, e2e TestBootPath against Debian's).
		if b.Watchdog == "" {
			t.Errorf("%s: no watchdog", b.Name)
		}
		if c := b.ColdplugModules(); len(c) == 0 || c[len(c)-1] != b.Watchdog {
			t.Errorf("%s: coldplug modules %v do not carry the watchdog %s", b.Name, c, b.Watchdog)
		}
		if b.FirstPartitionOffset() != 4<<20 {
			t.Errorf("%s: first partition at %d, want 4 MiB", b.Name, b.FirstPartitionOffset())
		}
	}
}

func TestBoardFacts(t *testing.T) {
	for _, tc := range []struct {
		name, soc, dtb, console string
		required                bool
		firstWriteTo            int64
	}{
		{"odroid-c2", "meson-gxbb", "amlogic/meson-gxbb-odroidc2.dtb", "ttyAML0,115200", true, 0},
		{"macchiatobin", "armada-8k", "marvell/armada-8040-mcbin.dtb", "ttyS0,115200", false, 512},
		{"qemu-virt", "qemu-virt", "", "ttyAMA0", false, -1},
	} {
		b, err := Get(tc.name)
		if err != nil {
			t.Fatal(err)
		}
		if b.SoC != tc.soc || b.DTB != tc.dtb || b.Console != tc.console || b.Bootloader.Required != tc.required {
			t.Errorf("%s: got soc %q dtb %q console %q required %v", tc.name, b.SoC, b.DTB, b.Console, b.Bootloader.Required)
		}
		if tc.firstWriteTo >= 0 && (len(b.Bootloader.Writes) == 0 || b.Bootloader.Writes[0].To != tc.firstWriteTo) {
			t.Errorf("%s: first bootloader write %+v, want to %d", tc.name, b.Bootloader.Writes, tc.firstWriteTo)
		}
	}
}

func TestOdroidKeepsPartitionTable(t *testing.T) {
	b, _ := Get("odroid-c2")
	for _, w := range b.Bootloader.Writes {
		end := w.To + w.Length
		if w.Length == 0 {
			end = b.FirstPartitionOffset()
		}
		if w.To < 512 && end > 440 {
			t.Errorf("write %+v overwrites the MBR table at 440..511", w)
		}
	}
}

func TestUnknownBoardListsKnown(t *testing.T) {
	_, err := Get("raspberry-pi")
	if err == nil || !strings.Contains(err.Error(), "odroid-c2") || !strings.Contains(err.Error(), "raspberry-pi") {
		t.Fatalf("got %v, want an error naming the board and listing the known ones", err)
	}
	if _, err := Get("../boards"); err == nil {
		t.Fatal("a path as board name was accepted")
	}
}

func TestParseRejects(t *testing.T) {
	base := "name = \"x\"\nconsole = \"ttyS0\"\nfirst_partition_offset = \"4MiB\"\nmodules = [\"btrfs\"]\n"
	for _, tc := range []struct{ name, data, want string }{
		{"unknown key", base + "colour = \"red\"\n", "unknown key \"colour\""},
		{"odd offset", strings.Replace(base, "4MiB", "1000", 1), "multiple of 1 MiB"},
		{"no modules", strings.Replace(base, "modules = [\"btrfs\"]\n", "", 1), "modules is empty"},
		{"write into p1", base + "[bootloader]\nwrites = [{ from = 0, to = 4194304 }]\n", "inside partition 1"},
		{"bad dtb", base + "dtb = \"/abs.dtb\"\n", "dtb"},
		{"required without writes", base + "[bootloader]\nrequired = true\n", "no writes"},
		{"coldplug and by name", base + "coldplug = [\"virtio_blk\", \"btrfs\"]\n", "coldplug module btrfs is in modules too"},
		{"watchdog twice", base + "coldplug = [\"i6300esb\"]\nwatchdog = \"i6300esb\"\n", "watchdog module i6300esb is in modules or coldplug too"},
		{"dtb without boot devices", base + "dtb = \"v/b.dtb\"\n", "boot_devices is empty"},
		{"bad boot device", base + "dtb = \"v/b.dtb\"\nboot_devices = [\"mmc0\"]\n", "bad node selector \"mmc0\""},
		{"boot devices without dtb", base + "boot_devices = [\"alias:mmc0\"]\n", "need a dtb"},
		{"fix-up without why", base + "dtb = \"v/b.dtb\"\nboot_devices = [\"alias:mmc0\"]\n[[dt_fixup]]\nnode = \"/x\"\ndelete = [\"y\"]\n", "why is empty"},
		{"fix-up bad value", base + "dtb = \"v/b.dtb\"\nboot_devices = [\"alias:mmc0\"]\n[[dt_fixup]]\nnode = \"/x\"\nwhy = \"z\"\nset = { y = -3 }\n", "does not fit a 32-bit cell"},
		{"writes without format", base + "[bootloader]\nwrites = [{ from = 0, to = 512 }]\n", "no format"},
		{"unknown format", base + "[bootloader]\nformat = \"floppy\"\nwrites = [{ from = 0, to = 512 }]\n", "unknown bootloader format \"floppy\""},
		{"bad debian path", base + "[bootloader]\nformat = \"armada-8k\"\nwrites = [{ from = 0, to = 512 }]\n[bootloader.debian]\nbl33 = \"u-boot.bin\"\nbl31 = \"a:b\"\n", "package:path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("x.toml", []byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
		})
	}
	if _, err := Parse("x.toml", []byte(base)); err != nil {
		t.Fatalf("valid board rejected: %v", err)
	}
}
