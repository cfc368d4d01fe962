package uboot

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/testenv"
)

var epoch = time.Unix(1700000000, 0)

func TestScriptImageHeader(t *testing.T) {
	script := "echo hello\n"
	img, err := ScriptImage("boot script", script, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if len(img) != HeaderSize+8+len(script) {
		t.Fatalf("image is %d bytes, want %d", len(img), HeaderSize+8+len(script))
	}
	h, payload, err := ParseImage(img)
	if err != nil {
		t.Fatal(err)
	}
	want := Header{Magic: Magic, Time: 1700000000, Size: uint32(8 + len(script)), OS: 5, Arch: 22, Type: 6, Comp: 0, Name: "boot script",
		HeaderCRC: h.HeaderCRC, DataCRC: h.DataCRC}
	if h != want {
		t.Fatalf("header %+v, want %+v", h, want)
	}
	got, err := ScriptText(payload)
	if err != nil || got != script {
		t.Fatalf("script %q, %v; want %q", got, err, script)
	}
	// Every single corrupted byte must be caught by a CRC or a field check.
	for _, off := range []int{0, 5, 9, 13, 24, 29, 40, HeaderSize, HeaderSize + 9, len(img) - 1} {
		bad := append([]byte(nil), img...)
		bad[off] ^= 0x40
		if _, _, err := ParseImage(bad); err == nil {
			t.Errorf("corrupting byte %d went unnoticed", off)
		}
	}
	if _, _, err := ParseImage(img[:HeaderSize+3]); err == nil {
		t.Error("truncated image accepted")
	}
}

func TestScriptImageErrors(t *testing.T) {
	if _, err := ScriptImage(strings.Repeat("n", 33), "x", epoch); err == nil || !strings.Contains(err.Error(), "33 bytes") {
		t.Errorf("long name: %v", err)
	}
	if _, err := ScriptImage("n", "x", time.Unix(-5, 0)); err == nil {
		t.Error("negative time accepted")
	}
}

// TestScriptImageMatchesUBootTools compares bytes with u-boot-tools'
// mkimage (the Debian binary, a test-only cross-check).
func TestScriptImageMatchesUBootTools(t *testing.T) {
	// Our own CLI is also called mkimage: use the Debian path.
	const ubootMkimage = "/usr/bin/mkimage"
	testenv.NeedFile(t, ubootMkimage)
	if out, _ := exec.Command(ubootMkimage, "-V").CombinedOutput(); !bytes.HasPrefix(out, []byte("mkimage version 20")) {
		testenv.Missing(t, ubootMkimage+" is not u-boot-tools' mkimage: "+string(out))
	}
	dir := t.TempDir()
	for _, tc := range []struct{ name, script string }{
		{"boot", "echo hi\n"},
		{"odd length", "setenv a b\nboot"},
		{strings.Repeat("x", 32), strings.Repeat("echo 0123456789\n", 300)},
	} {
		txt := filepath.Join(dir, "script.txt")
		out := filepath.Join(dir, "boot.scr")
		os.WriteFile(txt, []byte(tc.script), 0o644)
		cmd := exec.Command(ubootMkimage, "-A", "arm64", "-O", "linux", "-T", "script", "-C", "none", "-n", tc.name, "-d", txt, out)
		cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mkimage: %v\n%s", err, b)
		}
		want, _ := os.ReadFile(out)
		got, err := ScriptImage(tc.name, tc.script, epoch)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%q: our %d bytes differ from u-boot-tools' %d bytes\nours:   % x\ntheirs: % x", tc.name, len(got), len(want), got[:72], want[:min(72, len(want))])
		}
		// And u-boot-tools reads ours.
		os.WriteFile(out, got, 0o644)
		l, err := exec.Command(ubootMkimage, "-l", out).CombinedOutput()
		if err != nil || !bytes.Contains(l, []byte("AArch64 Linux Script (uncompressed)")) || !bytes.Contains(l, []byte("Image Name:   "+tc.name)) {
			t.Errorf("mkimage -l on ours: %v\n%s", err, l)
		}
	}
}

func TestExtlinuxRoundTrip(t *testing.T) {
	for _, e := range []Entry{
		{Label: "odroid", Kernel: "/Image", Initrd: "/initrd.img", FDT: "/dtbs/amlogic/meson-gxbb-odroidc2.dtb", Append: "console=ttyAML0,115200 root=PARTUUID=1234abcd-02 rootwait"},
		{Label: "qemu", Kernel: "/Image", Append: "console=ttyAMA0"},
	} {
		if err := e.Validate(); err != nil {
			t.Fatal(err)
		}
		s := Extlinux(e)
		for _, want := range []string{"default " + e.Label + "\n", "timeout ", "menu title ", "label " + e.Label + "\n", "    kernel " + e.Kernel + "\n"} {
			if !strings.Contains(s, want) {
				t.Errorf("extlinux.conf lacks %q:\n%s", want, s)
			}
		}
		if e.FDT == "" && strings.Contains(s, "fdt") {
			t.Errorf("no FDT given but the config names one:\n%s", s)
		}
		m, err := ParseMenu(s)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Entries) != 1 || m.Entries[0] != e || m.Default != e.Label {
			t.Errorf("round trip: got %+v, want %+v", m, e)
		}
		if p, err := ParseMenu(PXEConfig(e)); err != nil || p.Entries[0] != e {
			t.Errorf("pxe round trip: %+v %v", p, err)
		}
	}
}

func TestEntryValidate(t *testing.T) {
	for _, e := range []Entry{
		{Label: "", Kernel: "/Image"},
		{Label: "two words", Kernel: "/Image"},
		{Label: "a", Kernel: ""},
		{Label: "a", Kernel: "/Image", Append: "x\nlabel evil"},
		{Label: "a", Kernel: "/Image", Append: "root=$x"},
		{Label: "a", Kernel: "/my Image"},
		{Label: "a", Kernel: "/Image", Initrd: "/i;reset"},
	} {
		if err := e.Validate(); err == nil {
			t.Errorf("%+v accepted", e)
		}
		if _, err := BootScript(e); err == nil {
			t.Errorf("BootScript(%+v) accepted", e)
		}
	}
}

func TestBootScript(t *testing.T) {
	tests := []struct {
		e        Entry
		want     []string
		dontWant []string
	}{
		{Entry{Label: "odroid", Kernel: "/Image", Initrd: "/initrd.img", FDT: "/dtb", Append: "console=ttyAML0,115200 rootwait"},
			[]string{
				`setenv bootargs "console=ttyAML0,115200 rootwait"`,
				"if load ${devtype} ${devnum}:${distro_bootpart} ${kernel_addr_r} /Image; then",
				"if load ${devtype} ${devnum}:${distro_bootpart} ${ramdisk_addr_r} /initrd.img; then",
				"if load ${devtype} ${devnum}:${distro_bootpart} ${fdt_addr_r} /dtb; then",
				"booti ${kernel_addr_r} ${ramdisk_addr_r}:${initrd_size} ${fdt_addr_r}\n",
				"booti ${kernel_addr_r} ${ramdisk_addr_r}:${initrd_size} ${fdt_addr}\n",
				"could not boot odroid",
			}, []string{"|| exit"}},
		{Entry{Label: "qemu", Kernel: "/Image", Append: "console=ttyAMA0"},
			[]string{"booti ${kernel_addr_r} - ${fdt_addr}\n"},
			[]string{"fdt_addr_r", "ramdisk_addr_r"}},
	}
	for _, tc := range tests {
		s, err := BootScript(tc.e)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.want {
			if !strings.Contains(s, w) {
				t.Errorf("%s: script lacks %q:\n%s", tc.e.Label, w, s)
			}
		}
		for _, w := range tc.dontWant {
			if strings.Contains(s, w) {
				t.Errorf("%s: script has %q:\n%s", tc.e.Label, w, s)
			}
		}
		// Every if is closed: U-Boot's hush would otherwise read nothing.
		ifs, fis := 0, 0
		for _, l := range strings.Split(s, "\n") {
			l = strings.TrimSpace(l)
			if strings.HasPrefix(l, "if ") {
				ifs++
			}
			if l == "fi" {
				fis++
			}
		}
		if ifs == 0 || ifs != fis {
			t.Errorf("%s: %d if, %d fi:\n%s", tc.e.Label, ifs, fis, s)
		}
		// The initrd size must be saved before the FDT load overwrites filesize.
		if i, j := strings.Index(s, "initrd_size ${filesize}"), strings.Index(s, "${fdt_addr_r} /"); tc.e.FDT != "" && tc.e.Initrd != "" && (i < 0 || i > j) {
			t.Errorf("initrd size not saved before the fdt load:\n%s", s)
		}
	}
}

func TestPXENames(t *testing.T) {
	mac, _ := net.ParseMAC("AA:BB:0c:0D:ee:0F")
	got, err := PXEFileForMAC(mac)
	if err != nil || got != "pxelinux.cfg/01-aa-bb-0c-0d-ee-0f" {
		t.Errorf("got %q, %v", got, err)
	}
	long, _ := net.ParseMAC("00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01")
	if _, err := PXEFileForMAC(long); err == nil {
		t.Error("20-byte MAC accepted")
	}
	d := PXEDefaultFiles([]string{"default-arm-meson-p200", "default-arm-meson", "default-arm", "default"})
	want := []string{"pxelinux.cfg/default-arm-meson-p200", "pxelinux.cfg/default-arm-meson", "pxelinux.cfg/default-arm", "pxelinux.cfg/default"}
	if strings.Join(d, ",") != strings.Join(want, ",") {
		t.Errorf("defaults %q, want %q", d, want)
	}
}

func TestParseMenuRejectsUnknown(t *testing.T) {
	if _, err := ParseMenu("default a\nlabel a\n kernel /I\n bogus x\n"); err == nil {
		t.Error("unknown key accepted")
	}
	if _, err := ParseMenu("kernel /I\n"); err == nil {
		t.Error("kernel before label accepted")
	}
}

func TestPXEScript(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []Setenv
		want []string // in this order
		err  string
	}{
		{"plain", nil, []string{"echo mkimage netboot: pxe get\n", "pxe get && pxe boot\n", "pxe boot failed"}, ""},
		{"sizes and unpack area", []Setenv{{"tftpblocksize", "1468"}, {"tftpwindowsize", "16"}, {"kernel_comp_addr_r", "0x50000000"}},
			[]string{"setenv tftpblocksize 1468\n", "setenv tftpwindowsize 16\n", "setenv kernel_comp_addr_r 0x50000000\n",
				"echo mkimage netboot: tftpblocksize ${tftpblocksize} tftpwindowsize ${tftpwindowsize} kernel_comp_addr_r ${kernel_comp_addr_r}\n",
				"pxe get && pxe boot\n"}, ""},
		{"bad name", []Setenv{{"a b", "1"}}, nil, "lowercase letters"},
		{"empty value", []Setenv{{"a", ""}}, nil, "one word"},
		{"command in value", []Setenv{{"a", "1;reset"}}, nil, "one word"},
		{"variable in value", []Setenv{{"a", "${b}"}}, nil, "one word"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := PXEScript(tc.env)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			rest := s
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("script lacks %q (in order):\n%s", w, s)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}
