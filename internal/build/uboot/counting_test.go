package uboot

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/internal/bootstate"
	"github.com/mkimage/mkimage/internal/build/disk"
	"github.com/mkimage/mkimage/internal/build/fat"
	"github.com/mkimage/mkimage/internal/build/kmod/kmodtest"
	"github.com/mkimage/mkimage/internal/build/qemu"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/ondisk"
	"github.com/mkimage/mkimage/internal/testenv"
)

// odroidC2Commands are the commands Debian's odroid-c2 U-Boot 2023.01 was
// seen to have that a boot script may use (it has no setexpr, run,
// bootcount or saved environment); hushWords are the shell's own.
var (
	odroidC2Commands = map[string]bool{
		"load": true, "fatwrite": true, "save": true, "env": true, "itest": true, "test": true,
		"setenv": true, "echo": true, "booti": true, "sysboot": true, "source": true,
	}
	hushWords = map[string]bool{"else": true, "fi": true}
)

// TestCountingScriptCommands reads the script line by line: one command
// per line, each from the odroid-c2 build's list, every if closed.
func TestCountingScriptCommands(t *testing.T) {
	s := CountingScript()
	depth := 0
	for i, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		cmd := l
		for _, kw := range []string{"if ", "elif "} {
			if rest, ok := strings.CutPrefix(l, kw); ok {
				var then bool
				cmd, then = strings.CutSuffix(rest, "; then")
				if !then {
					t.Errorf("line %d %q: want %s...; then", i+1, l, kw)
				}
				if kw == "if " {
					depth++
				}
			}
		}
		if l == "fi" {
			depth--
		}
		if depth < 0 {
			t.Fatalf("line %d: fi without if", i+1)
		}
		if hushWords[cmd] {
			continue
		}
		// One command per line: the check below then sees all of them.
		if strings.ContainsAny(cmd, ";|&`") {
			t.Errorf("line %d %q: more than one command", i+1, l)
		}
		f := strings.Fields(cmd)
		if !odroidC2Commands[f[0]] {
			t.Errorf("line %d %q: %s is not in the odroid-c2 U-Boot's command list", i+1, l, f[0])
		}
		if f[0] == "env" && (len(f) < 3 || f[1] != "import" && f[1] != "export" || f[2] != "-t") {
			t.Errorf("line %d %q: want env import -t or env export -t", i+1, l)
		}
	}
	if depth != 0 {
		t.Errorf("%d if without fi", depth)
	}

	// The ladder, the size check, one write of state.env, and the try's
	// boot inside that write's if.
	for _, want := range []string{
		`test "${tries}" = 3`, "setenv tries 2", `elif test "${tries}" = 2`, "setenv tries 1", `elif test "${tries}" = 1`, "setenv tries 0",
		fmt.Sprintf(`test "${filesize}" = %X`, bootstate.Size),
		"env import -t ${ramdisk_addr_r} ${filesize} good try tries",
		"env export -t ${ramdisk_addr_r} good try tries",
		"/v/${try}/Image", "/v/${good}/initrd.img", "/v/${good}/board.dtb", "${fdt_addr}",
		"mkimage.version=${good}",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q", want)
		}
	}
	if n := strings.Count(s, "fatwrite "); n != 1 || !strings.Contains(s, "${ramdisk_addr_r} /state.env ${filesize}; then") {
		t.Errorf("want one fatwrite, of /state.env: %d", n)
	}
	w, try, good := strings.Index(s, "fatwrite "), strings.Index(s, "booting try"), strings.Index(s, "booting good")
	if w >= try || try >= good {
		t.Error("the try must boot only after the counter is written, and good after it")
	}
	for _, bad := range []string{"setexpr", "run ", "|| exit", "bootcount", "saveenv"} {
		if strings.Contains(s, bad) {
			t.Errorf("script uses %q", bad)
		}
	}
}

// Versions on the test card.
const (
	verGood    = "0123456789abcdef"
	verTry     = "fedcba9876543210"
	verNoImage = "1111111111111111"
	verGone    = "2222222222222222" // named by a damaged state.env, not on the card
)

// countingKernel returns the Image for the versions that have one: Debian's
// arm64 kernel when a test has unpacked it into the cache (CI fetches it),
// so a boot ends at "Starting kernel"; otherwise a small file booti
// rejects, and every boot runs the script's fall-through to the end.
func countingKernel(t *testing.T) (path string, debian bool) {
	if os.Getenv("CI") != "" {
		return kmodtest.DebianKernel(t).Image, true
	}
	if m := testenv.CacheFiles("test-debs/linux-image-*/boot/vmlinuz-*"); len(m) > 0 {
		return m[len(m)-1], true
	}
	p := filepath.Join(t.TempDir(), "Image")
	if err := os.WriteFile(p, bytes.Repeat([]byte("not an arm64 Image\n"), 256), 0o644); err != nil {
		t.Fatal(err)
	}
	return p, false
}

// card is a disk image laid out as the disk package lays out a qemu-virt
// card: an MBR, the FAT boot partition, a root partition left empty.
type card struct {
	path string
	boot ondisk.Partition
}

// makeCard writes a card holding the counting script, state.env and
// state.bak, and versions good, try (both with kernel as Image) and
// no-image (boot.env and initramfs only).
func makeCard(t *testing.T, kernel string, env, bak []byte) card {
	t.Helper()
	epoch := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	scr, err := ScriptImage("mkimage counting boot", CountingScript(), epoch)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(kernel)
	if err != nil {
		t.Fatal(err)
	}
	tr := fstree.New(epoch)
	put := func(p string, n *fstree.Inode) {
		if _, err := tr.MkdirAll(filepath.Dir(p), epoch); err != nil {
			t.Fatal(err)
		}
		if err := tr.Put(p, n); err != nil {
			t.Fatal(err)
		}
	}
	file := func(p string, b []byte) { put(p, fstree.NewFile(0o644, b, epoch)) }
	file("boot.scr", scr)
	file(bootstate.EnvFile, env)
	file(bootstate.BakFile, bak)
	for _, v := range []string{verGood, verTry, verNoImage} {
		dir := bootstate.VersionDir(v)
		be, err := bootstate.BootEnv("console=ttyAMA0 marker=" + v)
		if err != nil {
			t.Fatal(err)
		}
		file(dir+"/"+bootstate.BootEnvFile, be)
		file(dir+"/"+bootstate.InitrdFile, []byte("initramfs of "+v+"\n"))
		if v != verNoImage {
			put(dir+"/"+bootstate.KernelFile, &fstree.Inode{Mode: fstree.ModeRegular | 0o644, Mtime: epoch,
				Content: fstree.HostFile{Path: kernel, Length: st.Size()}})
		}
	}
	bd, err := boards.Get("qemu-virt")
	if err != nil {
		t.Fatal(err)
	}
	l, err := disk.Plan(bd, 96<<20, 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	c := card{path: filepath.Join(t.TempDir(), "card.img"), boot: l.Boot()}
	f, err := os.Create(c.path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(l.Size); err != nil {
		t.Fatal(err)
	}
	if _, err := fat.Write(io.NewOffsetWriter(f, c.boot.Start), tr, fat.Options{Size: c.boot.Size, VolumeID: 14, HiddenSectors: uint32(c.boot.Start / 512)}); err != nil {
		t.Fatal(err)
	}
	if _, err := ondisk.WriteMBR(f, l.MBR(ondisk.DiskID([]byte("bootcount")))); err != nil {
		t.Fatal(err)
	}
	return c
}

// bootFAT copies the card's boot partition to its own file (holes stay
// holes), for fsck.fat and for comparing before and after a boot.
func (c card) bootFAT(t *testing.T) string {
	t.Helper()
	in, err := os.Open(c.path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.CreateTemp(t.TempDir(), "boot-*.fat")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	buf := make([]byte, 1<<20)
	for off := int64(0); off < c.boot.Size; off += int64(len(buf)) {
		b := buf[:min(int64(len(buf)), c.boot.Size-off)]
		if _, err := in.ReadAt(b, c.boot.Start+off); err != nil {
			t.Fatal(err)
		}
		if fstree.IsZero(b) {
			continue
		}
		if _, err := out.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := out.Truncate(c.boot.Size); err != nil {
		t.Fatal(err)
	}
	return out.Name()
}

// bootScript boots the card through u-boot-qemu until the script hands a
// kernel over ("Starting kernel") or gives up, kills QEMU (the kernel
// would panic without a root anyway) and returns the script's own lines.
func bootScript(t *testing.T, c card) (lines []string, console string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vm, err := qemu.Start(ctx, qemu.Options{Disk: c.path, CPU: "cortex-a57", MemoryMiB: 512})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		console = vm.Console.String()
		if strings.Contains(console, "Starting kernel") || strings.Contains(console, "mkimage boot: no version booted") {
			break
		}
		select {
		case <-tick.C:
		case <-vm.Done():
			t.Fatalf("qemu exited before the script ended: %v\n%s", vm.Wait(), console)
		case <-ctx.Done():
			t.Fatalf("the script never ended:\n%s", strings.Join(vm.Console.Tail(40), "\n"))
		}
	}
	vm.Kill()
	for _, l := range strings.Split(strings.ReplaceAll(console, "\r", ""), "\n") {
		if strings.HasPrefix(l, "mkimage boot:") {
			lines = append(lines, l)
		}
	}
	if n := strings.Count(console, "mkimage boot: state good"); n != 1 {
		t.Fatalf("the script ran %d times (a reset?):\n%s", n, console)
	}
	return lines, console
}

// booted returns the first version the script tried to boot and how.
func booted(lines []string) (kind, id string) {
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l, "mkimage boot: booting "); ok {
			f := strings.Fields(rest)
			return f[0], f[1]
		}
	}
	return "", ""
}

// checkFsck runs fsck.fat -n on a copy of the boot partition.
func checkFsck(t *testing.T, fatFile string) {
	t.Helper()
	out, err := exec.Command("fsck.fat", "-n", fatFile).CombinedOutput()
	if err != nil {
		t.Fatalf("fsck.fat -n: %v\n%s", err, out)
	}
	for _, bad := range []string{"differ", "rror", "arning", "Free cluster summary", "Dirty", "Reclaimed", "unused"} {
		if bytes.Contains(out, []byte(bad)) {
			t.Errorf("fsck.fat -n reports %q:\n%s", bad, out)
		}
	}
}

// changedOnlyIn fails t unless every sector that differs between the two
// partition copies lies in the given extents; it returns how many differ.
func changedOnlyIn(t *testing.T, before, after string, ext []fat.Range) int {
	t.Helper()
	a, err := os.ReadFile(before)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(after)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != len(b) {
		t.Fatalf("partition copies of %d and %d bytes", len(a), len(b))
	}
	n := 0
	for off := 0; off < len(a); off += 512 {
		if bytes.Equal(a[off:off+512], b[off:off+512]) {
			continue
		}
		n++
		in := false
		for _, r := range ext {
			in = in || int64(off) >= r.Offset && int64(off)+512 <= r.Offset+r.Length
		}
		if !in {
			t.Errorf("boot changed sector at partition offset %#x, outside state.env's cluster %v", off, ext)
		}
	}
	return n
}

// readState returns a file's bytes from a partition copy, and where the
// file lies.
func readState(t *testing.T, fatFile, name string) ([]byte, []fat.Range) {
	t.Helper()
	f, err := os.Open(fatFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	fs, err := fat.Open(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	b, err := fs.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	ext, err := fs.Extents(name)
	if err != nil {
		t.Fatal(err)
	}
	return b, ext
}

func encode(t *testing.T, s bootstate.State) []byte {
	t.Helper()
	b, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCountingScriptQEMU boots cards through Debian's u-boot-qemu: the
// script counts a try down 3, 2, 1 then boots good; a try without an
// Image boots good in the same boot; a damaged state.env gives way to
// state.bak. After every boot: state.env is what bootstate encodes for
// the expected state (so U-Boot's rewrite is byte for byte ours, same
// size), only its one cluster changed on the partition, state.bak is
// untouched and fsck.fat -n is clean.
func TestCountingScriptQEMU(t *testing.T) {
	testenv.Short(t)
	testenv.NeedTools(t, "qemu-system-aarch64", "fsck.fat")
	testenv.NeedFile(t, qemu.UBoot)
	kernel, debian := countingKernel(t)
	if debian {
		t.Logf("versions boot Debian's kernel %s: each boot ends at Starting kernel", kernel)
	} else {
		t.Logf("no cached Debian kernel: Image is a file booti rejects, so each boot falls through to good and the script's end")
	}
	counting := bootstate.State{Good: verGood, Try: verTry, Tries: bootstate.MaxTries}
	zeros := make([]byte, bootstate.Size)
	// A state that imports but names a version the card lacks.
	gone := bytes.ReplaceAll(encode(t, counting), []byte("good="+verGood), []byte("good="+verGone))

	type boot struct {
		kind, id string // the version booted first ("try", "good")
		tries    int    // tries in state.env afterwards
		want     []string
	}
	for _, tc := range []struct {
		name     string
		env, bak []byte
		try      string
		boots    []boot
	}{
		{"count down", encode(t, counting), encode(t, counting), verTry, []boot{
			{"try", verTry, 2, []string{"counted try " + verTry + ", tries 2 left", "bootargs console=ttyAMA0 marker=" + verTry + " mkimage.version=" + verTry}},
			{"try", verTry, 1, nil},
			{"try", verTry, 0, nil},
			{"good", verGood, 0, []string{"bootargs console=ttyAMA0 marker=" + verGood + " mkimage.version=" + verGood}},
			{"good", verGood, 0, nil},
		}},
		{"try without Image", encode(t, bootstate.State{Good: verGood, Try: verNoImage, Tries: 3}), encode(t, bootstate.State{Good: verGood, Try: verNoImage, Tries: 3}), verNoImage, []boot{
			{"good", verGood, 2, []string{"counted try " + verNoImage + ", tries 2 left", "could not boot try " + verNoImage}},
		}},
		{"state.env names a missing version", gone, encode(t, counting), verTry, []boot{
			{"try", verTry, 2, []string{"no usable state.env, reading state.bak"}},
		}},
		{"state.env zeroed", zeros, encode(t, counting), verTry, []boot{
			{"try", verTry, 2, []string{"no usable state.env, reading state.bak"}},
			{"try", verTry, 1, nil},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := makeCard(t, kernel, tc.env, tc.bak)
			before := c.bootFAT(t)
			checkFsck(t, before)
			envBefore, _ := readState(t, before, bootstate.EnvFile)
			for i, b := range tc.boots {
				lines, console := bootScript(t, c)
				text := strings.Join(lines, "\n")
				if testing.Verbose() {
					t.Logf("boot %d:\n%s", i+1, text)
				}
				kind, id := booted(lines)
				if debian && (!strings.Contains(console, "Starting kernel") || strings.Count(text, "booting ") != 1) {
					t.Errorf("boot %d: want one version booted, to Starting kernel:\n%s", i+1, text)
				}
				if kind != b.kind || id != b.id {
					t.Errorf("boot %d: booted %s %s first, want %s %s:\n%s", i+1, kind, id, b.kind, b.id, text)
				}
				for _, w := range b.want {
					if !strings.Contains(text, w) {
						t.Errorf("boot %d: no line with %q:\n%s", i+1, w, text)
					}
				}

				after := c.bootFAT(t)
				checkFsck(t, after)
				env, ext := readState(t, after, bootstate.EnvFile)
				// Byte for byte what bootstate encodes: U-Boot's rewrite and
				// the node's agree, size included.
				if want := encode(t, bootstate.State{Good: verGood, Try: tc.try, Tries: b.tries}); !bytes.Equal(env, want) {
					t.Errorf("boot %d: state.env holds %q, want %q", i+1, env, want)
				}
				counted := !bytes.Equal(env, envBefore)
				if bak, _ := readState(t, after, bootstate.BakFile); !bytes.Equal(bak, tc.bak) {
					t.Errorf("boot %d: state.bak changed to %q", i+1, bak)
				}
				n := changedOnlyIn(t, before, after, ext)
				if counted != (n > 0) {
					t.Errorf("boot %d: %d sectors changed; state.env rewritten: %v", i+1, n, counted)
				}
				if testing.Verbose() {
					t.Logf("boot %d: %d sectors of the partition changed, state.env at %v", i+1, n, ext)
				}
				os.Remove(before) // the copies hold two kernels each
				before, envBefore = after, env
			}
		})
	}
}
