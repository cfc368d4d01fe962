package builder

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/cachedir"

	"github.com/mkimage/mkimage/internal/ondisk"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/internal/build/bootblob"
	"github.com/mkimage/mkimage/internal/build/bootblob/bootblobtest"
	"github.com/mkimage/mkimage/internal/build/disk"
	"github.com/mkimage/mkimage/internal/testenv"
)

func writeFiles(t *testing.T, files map[string][]byte) string {
	dir := t.TempDir()
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func loadFor(t *testing.T, board string, paths ...string) (*inputs, error) {
	b, err := boards.Get(board)
	if err != nil {
		t.Fatal(err)
	}
	in := &inputs{board: b}
	return in, in.loadBootloader(&Options{Bootloader: paths, Log: io.Discard})
}

func TestLoadBootloaderRefuses(t *testing.T) {
	bl1, hk := bootblobtest.HardkernelPair(t, 1)
	dir := writeFiles(t, map[string][]byte{
		"random.bin":         bootblobtest.Random(1, 512<<10),
		"u-boot.bin":         bootblobtest.UBoot(2, 600<<10),
		"hk-u-boot.bin":      hk,
		"bl1.bin.hardkernel": bl1,
		"flash-image.bin":    bootblobtest.Armada8K(bootblobtest.Random(3, 1<<20)),
	})
	p := func(n string) string { return filepath.Join(dir, n) }
	for _, tc := range []struct {
		board string
		files []string
		want  string
	}{
		{"odroid-c2", []string{p("random.bin")}, p("random.bin") + " is unrecognised data; wanted a signed Amlogic SD image"},
		{"odroid-c2", []string{p("u-boot.bin")}, p("u-boot.bin") + " is an unsigned u-boot.bin (an ARM64 U-Boot binary, not a signed FIP)"},
		{"odroid-c2", []string{p("hk-u-boot.bin")}, p("hk-u-boot.bin") + " is Hardkernel's u-boot.bin (FIP without BL1): pass bl1.bin.hardkernel too"},
		{"odroid-c2", []string{p("bl1.bin.hardkernel")}, "pass Hardkernel's u-boot.bin too"},
		{"odroid-c2", []string{p("flash-image.bin")}, "is a Marvell Armada 8K boot image"},
		{"odroid-c2", []string{p("missing.bin")}, "no such file"},
		{"macchiatobin", []string{p("random.bin")}, p("random.bin") + " is unrecognised data; wanted a Marvell Armada 8K boot image (flash-image.bin)"},
		{"macchiatobin", []string{p("hk-u-boot.bin")}, "is Hardkernel's u-boot.bin"},
		{"qemu-virt", []string{p("flash-image.bin")}, "takes no bootloader"},
	} {
		t.Run(tc.board+" "+filepath.Base(strings.Join(tc.files, ",")), func(t *testing.T) {
			_, err := loadFor(t, tc.board, tc.files...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
		})
	}
}

// The pair lands where Hardkernel's sd_fusing.sh puts it: bl1 bytes
// 0..439 in sector 0 (the script writes 0..441; 440..441 are the MBR's
// disk identifier and stay ours), the rest of bl1 from sector 1,
// u-boot.bin at sector 97.
func TestHardkernelPairPlacement(t *testing.T) {
	bl1, hk := bootblobtest.HardkernelPair(t, 4)
	dir := writeFiles(t, map[string][]byte{"bl1.bin.hardkernel": bl1, "u-boot.bin": hk})
	in, err := loadFor(t, "odroid-c2", filepath.Join(dir, "bl1.bin.hardkernel"), filepath.Join(dir, "u-boot.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if len(in.list) != 2 || !strings.Contains(in.list[1].Note, "Hardkernel's u-boot.bin") {
		t.Errorf("manifest inputs %+v", in.list)
	}
	l, err := disk.Plan(in.board, 8<<20, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	mbr := l.MBR(0xcafe0001)
	img := filepath.Join(t.TempDir(), "card.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(l.Size)
	if _, err := disk.WriteBootloader(f, in.board, in.blobName, in.blob); err != nil {
		t.Fatal(err)
	}
	if _, err := ondisk.WriteMBR(f, mbr); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(img)

	// sd_fusing.sh on a card that already has our table.
	sim := make([]byte, 4<<20)
	ondisk.WriteMBR(writerAt{sim}, mbr)
	copy(sim[0:442], bl1[0:442])     // dd bs=1 count=442
	copy(sim[512:], bl1[512:])       // dd bs=512 skip=1 seek=1
	copy(sim[97*512:], hk)           // dd bs=512 seek=97
	copy(sim[440:442], got[440:442]) // the disk identifier stays ours
	if !bytes.Equal(got[:4<<20], sim) {
		for i := range sim {
			if got[i] != sim[i] {
				t.Fatalf("card differs from sd_fusing.sh's layout first at byte %d", i)
			}
		}
	}
	if !bytes.Equal(got[440:512], sim[440:512]) || got[510] != 0x55 || got[511] != 0xAA {
		t.Error("partition table not kept")
	}
}

type writerAt struct{ b []byte }

func (w writerAt) WriteAt(p []byte, off int64) (int, error) { return copy(w.b[off:], p), nil }

func TestLoadBootloaderAccepts(t *testing.T) {
	sd := bootblobtest.SDImage(t, 5)
	a8k := bootblobtest.Armada8K(bootblobtest.Random(6, 1<<20))
	dir := writeFiles(t, map[string][]byte{"u-boot.bin.sd.bin": sd, "u-boot.img": sd[512:], "flash-image.bin": a8k})
	for _, tc := range []struct {
		board, file string
		want        []byte
	}{
		{"odroid-c2", "u-boot.bin.sd.bin", sd},
		{"odroid-c2", "u-boot.img", sd},
		{"macchiatobin", "flash-image.bin", a8k},
	} {
		in, err := loadFor(t, tc.board, filepath.Join(dir, tc.file))
		if err != nil {
			t.Errorf("%s %s: %v", tc.board, tc.file, err)
			continue
		}
		if !bytes.Equal(in.blob, tc.want) || in.blobName != tc.file {
			t.Errorf("%s %s: blob %s of %d bytes", tc.board, tc.file, in.blobName, len(in.blob))
		}
	}
	// No bootloader: a warning where the board needs one.
	in, err := loadFor(t, "odroid-c2")
	if err != nil || len(in.warnings) != 1 {
		t.Errorf("no bootloader: %v %v", err, in.warnings)
	}
}

func TestAssembleBootloader(t *testing.T) {
	p := bootblobtest.Parts(7)
	tree := t.TempDir()
	gxb := filepath.Join(tree, "fip", "gxb")
	os.MkdirAll(gxb, 0o755)
	for n, b := range map[string][]byte{"bl2.package": p.BL2, "bl30.bin": p.BL30, "bl301.bin": p.BL301} {
		os.WriteFile(filepath.Join(gxb, n), b, 0o644)
	}
	dir := writeFiles(t, map[string][]byte{"bl31.bin": p.BL31, "u-boot.bin": p.BL33})
	out := filepath.Join(t.TempDir(), "u-boot.bin.sd.bin")
	parts, err := AssembleBootloader(t.Context(), BootloaderOptions{
		Board: "odroid-c2", Amlogic: tree, BL31: filepath.Join(dir, "bl31.bin"), BL33: filepath.Join(dir, "u-boot.bin"), Output: out,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 5 || parts[0].Path != filepath.Join(gxb, "bl2.package") {
		t.Errorf("parts %+v", parts)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := bootblobtest.SDImage(t, 7); !bytes.Equal(got, want) {
		t.Error("assembled file is not the signed SD image of its parts")
	}
	if _, err := loadFor(t, "odroid-c2", out); err != nil {
		t.Errorf("--bootloader refuses what mkimage bootloader wrote: %v", err)
	}

	// A flat directory with a bare bl2.bin (the package's first 0xB000
	// bytes are all that go in) gives the same file.
	flat := writeFiles(t, map[string][]byte{"bl2.bin": p.BL2[:0xB000], "bl30.bin": p.BL30, "bl301.bin": p.BL301})
	out2 := filepath.Join(t.TempDir(), "flat.sd.bin")
	if _, err := AssembleBootloader(t.Context(), BootloaderOptions{
		Board: "odroid-c2", Amlogic: flat, BL31: filepath.Join(dir, "bl31.bin"), BL33: filepath.Join(dir, "u-boot.bin"), Output: out2,
	}); err != nil {
		t.Fatal(err)
	}
	if got2, _ := os.ReadFile(out2); !bytes.Equal(got2, got) {
		t.Error("bl2.bin in a flat directory gives a different file than bl2.package in fip/gxb")
	}

	for _, tc := range []struct {
		o    BootloaderOptions
		want string
	}{
		{BootloaderOptions{Board: "macchiatobin", Amlogic: tree, Output: out}, "cannot assemble"},
		{BootloaderOptions{Board: "odroid-c2", Output: out}, "Amlogic parts"},
		{BootloaderOptions{Board: "odroid-c2", Amlogic: dir, Output: out}, "no bl2.package (looked for fip/gxb/bl2.package"},
		{BootloaderOptions{Board: "odroid-c2", Amlogic: tree, BL31: filepath.Join(dir, "bl31.bin"), BL33: out, Output: out + "2"}, "is a signed Amlogic SD image"},
	} {
		if _, err := AssembleBootloader(t.Context(), tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
}

// The Debian files board data names exist in Debian's current packages,
// and a card bootloader assembles from them.
func TestDebianBootloaderParts(t *testing.T) {
	testenv.Short(t)
	testenv.NeedTools(t, "apt-get", "apt-cache")
	all, err := boards.All()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range all {
		d := b.Bootloader.Debian
		if d == nil {
			continue
		}
		t.Run(b.Name, func(t *testing.T) {
			o := &Options{CacheDir: cachedir.Root(), Log: io.Discard}
			bl33, err := debianFile(t.Context(), o, d.BL33)
			if err != nil {
				t.Fatal(err)
			}
			if k := bootblob.Identify(bl33).Kind; k != bootblob.UBoot {
				t.Errorf("%s is %s", d.BL33, bootblob.Identify(bl33))
			}
			if bl31, err := debianFile(t.Context(), o, d.BL31); err != nil || len(bl31) < 4096 {
				t.Fatalf("%s: %d bytes, %v", d.BL31, len(bl31), err)
			}
			p := bootblobtest.Parts(9)
			tree := writeFiles(t, map[string][]byte{"bl2.package": p.BL2, "bl30.bin": p.BL30, "bl301.bin": p.BL301})
			out := filepath.Join(t.TempDir(), "u-boot.bin.sd.bin")
			if _, err := AssembleBootloader(t.Context(), BootloaderOptions{Board: b.Name, Amlogic: tree, Output: out, CacheDir: o.CacheDir}); err != nil {
				t.Fatal(err)
			}
			if _, err := loadFor(t, b.Name, out); err != nil {
				t.Fatal(err)
			}
		})
	}
}
