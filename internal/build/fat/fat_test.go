package fat

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/testenv"
)

var t0 = time.Date(2024, 3, 5, 14, 7, 31, 0, time.UTC)

// sampleTree holds the cases the brief lists: long names, nested and empty
// directories, empty files, a file of exactly one cluster and one byte
// more, and names that need generated short names.
func sampleTree(t testing.TB, clusterBytes int) *fstree.Tree {
	tr := fstree.New(t0)
	rnd := rand.New(rand.NewSource(1))
	data := func(n int) []byte { b := make([]byte, n); rnd.Read(b); return b }
	put := func(p string, b []byte, mt time.Time) {
		dir := filepath.Dir(p)
		if dir != "." {
			if _, err := tr.MkdirAll(dir, t0.Add(-time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
		if err := tr.Put(p, fstree.NewFile(0o644, b, mt)); err != nil {
			t.Fatal(err)
		}
	}
	put("Image", data(3<<20+17), t0)
	put("initrd.img-6.1.0-18-arm64", data(1<<20), t0.Add(time.Second))
	put("extlinux/extlinux.conf", []byte("default x\n"), t0)
	put("dtbs/amlogic/meson-gxbb-odroidc2.dtb", data(30000), t0)
	put("dtbs/marvell/armada-8040-mcbin.dtb", data(40000), t0)
	put("BOOT.SCR", data(100), t0)
	put("boot.cmd", data(10), t0)
	put("empty", nil, t0)
	put("one-cluster.bin", data(clusterBytes), t0)
	put("one-cluster-plus-one.bin", data(clusterBytes+1), t0)
	put("a name with spaces and ÜNICODE ✓.txt", data(5), time.Date(2031, 12, 31, 23, 59, 59, 0, time.UTC))
	put(".hidden", data(7), t0)
	put("very.many.dots.in.name", data(9), t0)
	put(strings.Repeat("L", 200)+".long", data(3), t0)
	put("old-file", data(1), time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC))
	for i := 0; i < 12; i++ {
		// Same 6-letter stem: tails ~1..~9 then ~10.. with a shorter stem.
		put(fmt.Sprintf("longname-%02d.conf", i), data(i), t0)
	}
	if _, err := tr.MkdirAll("empty-dir", t0); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.MkdirAll("deep/er/and/deeper/still", t0); err != nil {
		t.Fatal(err)
	}
	put("deep/er/and/deeper/still/leaf", data(4097), t0)
	return tr
}

func writeImage(t testing.TB, tr *fstree.Tree, opt Options) (string, []Range) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "boot.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if opt.Size == 0 {
		opt.Size = DefaultSize
	}
	if err := f.Truncate(opt.Size); err != nil {
		t.Fatal(err)
	}
	rs, err := Write(f, tr, opt)
	if err != nil {
		t.Fatal(err)
	}
	return p, rs
}

func mustGeom(t testing.TB, size int64) geometry {
	g, err := planGeometry(size)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// treeFiles lists path -> content of every regular file, and every
// directory as path -> nil.
func treeFiles(t testing.TB, tr *fstree.Tree) map[string][]byte {
	m := map[string][]byte{}
	tr.Walk(func(p string, n *fstree.Inode) error {
		if p == "" {
			return nil
		}
		if n.IsDir() {
			m[p+"/"] = nil
			return nil
		}
		b, err := fstree.ReadAll(n.Content)
		if err != nil {
			t.Fatal(err)
		}
		m[p] = append([]byte{}, b...)
		return nil
	})
	return m
}

func TestFsckClean(t *testing.T) {
	testenv.NeedTools(t, "fsck.vfat")
	for _, size := range []int64{DefaultSize, 40 << 20, 1 << 30} {
		g := mustGeom(t, size)
		img, _ := writeImage(t, sampleTree(t, int(g.clusterBytes())), Options{Size: size, VolumeID: 0x1234abcd})
		out, err := exec.Command("fsck.vfat", "-n", "-v", img).CombinedOutput()
		if err != nil {
			t.Fatalf("size %d: fsck.vfat -n: %v\n%s", size, err, out)
		}
		for _, bad := range []string{"differ", "rror", "arning", "Free cluster summary", "LFN", "Dirty"} {
			if bytes.Contains(out, []byte(bad)) {
				t.Errorf("size %d: fsck.vfat reports %q:\n%s", size, bad, out)
			}
		}
		if !bytes.Contains(out, []byte("FAT32")) && !bytes.Contains(out, []byte("32-bit")) {
			t.Logf("fsck output:\n%s", out)
		}
	}
}

func TestMtoolsReadBack(t *testing.T) {
	testenv.NeedTools(t, "mdir", "mcopy")
	g := mustGeom(t, DefaultSize)
	tr := sampleTree(t, int(g.clusterBytes()))
	img, _ := writeImage(t, tr, Options{VolumeID: 0xdeadbeef})
	env := append(os.Environ(), "TZ=UTC", "MTOOLSRC=/dev/null")

	mdir := exec.Command("mdir", "-i", img, "-/", "::")
	mdir.Env = env
	out, err := mdir.CombinedOutput()
	if err != nil {
		t.Fatalf("mdir: %v\n%s", err, out)
	}
	for _, want := range []string{"BOOT", "DEAD-BEEF", "extlinux.conf", "meson-gxbb-odroidc2.dtb", "a name with spaces and ÜNICODE ✓.txt", "initrd.img-6.1.0-18-arm64", "longname-11.conf"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("mdir output lacks %q:\n%s", want, out)
		}
	}

	dst := t.TempDir()
	mc := exec.Command("mcopy", "-i", img, "-s", "-m", "-n", "::/", dst)
	mc.Env = env
	if out, err := mc.CombinedOutput(); err != nil {
		t.Fatalf("mcopy: %v\n%s", err, out)
	}
	got := map[string][]byte{}
	filepath.Walk(dst, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dst {
			return err
		}
		rel, _ := filepath.Rel(dst, p)
		if fi.IsDir() {
			got[rel+"/"] = nil
			return nil
		}
		b, _ := os.ReadFile(p)
		got[rel] = b
		return nil
	})
	want := treeFiles(t, tr)
	compareFiles(t, "mcopy", got, want)

	// mcopy -m keeps FAT's modification time; FAT has 2-second steps.
	fi, err := os.Stat(filepath.Join(dst, "initrd.img-6.1.0-18-arm64"))
	if err != nil {
		t.Fatal(err)
	}
	if !fi.ModTime().Equal(t0.Add(time.Second)) {
		t.Errorf("mtime %v, want %v", fi.ModTime().UTC(), t0.Add(time.Second))
	}
	fi, _ = os.Stat(filepath.Join(dst, "Image"))
	if !fi.ModTime().Equal(t0.Add(-time.Second)) {
		t.Errorf("odd-second mtime %v, want %v (rounded down to 2 s)", fi.ModTime().UTC(), t0.Add(-time.Second))
	}
}

func compareFiles(t *testing.T, who string, got, want map[string][]byte) {
	t.Helper()
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			t.Errorf("%s: %s missing", who, p)
			continue
		}
		if !bytes.Equal(g, w) {
			t.Errorf("%s: %s differs: %d bytes, want %d", who, p, len(g), len(w))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: unexpected %s", who, p)
		}
	}
}

func TestOwnReader(t *testing.T) {
	g := mustGeom(t, DefaultSize)
	tr := sampleTree(t, int(g.clusterBytes()))
	img, _ := writeImage(t, tr, Options{VolumeID: 7, Label: "MYBOOT"})
	f, _ := os.Open(img)
	defer f.Close()
	fs, err := Open(f, DefaultSize)
	if err != nil {
		t.Fatal(err)
	}
	if fs.VolumeID != 7 || fs.Label != "MYBOOT" {
		t.Errorf("volume id %d label %q", fs.VolumeID, fs.Label)
	}
	ents, err := fs.List()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]byte{}
	var paths []string
	for _, e := range ents {
		paths = append(paths, e.Path)
		if e.Dir {
			got[e.Path+"/"] = nil
			continue
		}
		b, err := fs.ReadFile(e.Path)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(b)) != e.Size {
			t.Errorf("%s: read %d bytes, entry says %d", e.Path, len(b), e.Size)
		}
		got[e.Path] = b
		// The file's extents hold its bytes, in order.
		ext, err := fs.Extents(e.Path)
		if err != nil {
			t.Fatal(err)
		}
		var fromExt []byte
		for _, r := range ext {
			c := make([]byte, r.Length)
			f.ReadAt(c, r.Offset)
			fromExt = append(fromExt, c...)
		}
		if int64(len(fromExt)) < e.Size || !bytes.Equal(fromExt[:e.Size], b) {
			t.Errorf("%s: extents %v do not hold its %d bytes", e.Path, ext, e.Size)
		}
	}
	compareFiles(t, "reader", got, treeFiles(t, tr))
	if !sort.StringsAreSorted(paths[:3]) {
		t.Errorf("entries not in tree order: %q", paths)
	}
	if b, err := fs.ReadFile("/EXTLINUX/EXTLINUX.CONF"); err != nil || string(b) != "default x\n" {
		t.Errorf("case-insensitive lookup: %q %v", b, err)
	}
	if _, err := fs.ReadFile("/nope"); err == nil {
		t.Error("missing file read")
	}
	if _, err := fs.Extents("/nope"); err == nil {
		t.Error("extents of a missing file")
	}
	for _, e := range ents {
		if e.Path == "old-file" && !e.Mtime.Equal(fatEpoch) {
			t.Errorf("1970 mtime stored as %v, want the FAT epoch", e.Mtime)
		}
	}
}

func TestReproducible(t *testing.T) {
	sum := func() ([32]byte, []Range) {
		img, rs := writeImage(t, sampleTree(t, 2048), Options{VolumeID: 42})
		b, _ := os.ReadFile(img)
		return sha256.Sum256(b), rs
	}
	a, ra := sum()
	b, rb := sum()
	if a != b {
		t.Error("two writes of the same tree differ")
	}
	if fmt.Sprint(ra) != fmt.Sprint(rb) {
		t.Error("written ranges differ")
	}
	img, _ := writeImage(t, sampleTree(t, 2048), Options{VolumeID: 43})
	c, _ := os.ReadFile(img)
	if sha256.Sum256(c) == a {
		t.Error("volume id does not reach the bytes")
	}
}

// TestRanges checks that everything outside the reported ranges is zero, so
// a .bmap built from them loses nothing.
func TestRanges(t *testing.T) {
	img, rs := writeImage(t, sampleTree(t, 2048), Options{VolumeID: 1})
	b, _ := os.ReadFile(img)
	var covered int64
	prev := int64(-1)
	for _, r := range rs {
		if r.Offset <= prev {
			t.Fatalf("ranges not sorted and merged: %v", rs)
		}
		prev = r.Offset + r.Length
		covered += r.Length
		clear(b[r.Offset : r.Offset+r.Length])
	}
	if i := bytes.IndexFunc(b, func(r rune) bool { return r != 0 }); i >= 0 {
		t.Errorf("non-zero byte at %d outside the written ranges", i)
	}
	if covered > 8<<20 || covered < 4<<20 {
		t.Errorf("ranges cover %d bytes for about 5 MB of files", covered)
	}
}

func TestManyFiles(t *testing.T) {
	testenv.NeedTools(t, "fsck.vfat", "mdir")
	tr := fstree.New(t0)
	d, _ := tr.MkdirAll("many", t0)
	for i := 0; i < 1000; i++ {
		d.Children[fmt.Sprintf("overlay-file-number-%04d.dtbo", i)] = fstree.NewFile(0o644, []byte(fmt.Sprint(i)), t0)
	}
	img, _ := writeImage(t, tr, Options{Size: 64 << 20, VolumeID: 5})
	if out, err := exec.Command("fsck.vfat", "-n", img).CombinedOutput(); err != nil {
		t.Fatalf("fsck.vfat: %v\n%s", err, out)
	}
	cmd := exec.Command("mdir", "-b", "-i", img, "::/many")
	cmd.Env = append(os.Environ(), "MTOOLSRC=/dev/null")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mdir: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 1000 {
		t.Errorf("mdir lists %d files, want 1000", len(lines))
	}
	f, _ := os.Open(img)
	defer f.Close()
	fs, err := Open(f, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	b, err := fs.ReadFile("many/overlay-file-number-0999.dtbo")
	if err != nil || string(b) != "999" {
		t.Errorf("read %q, %v", b, err)
	}
	ents, _ := fs.List()
	shorts := map[string]bool{}
	for _, e := range ents {
		if shorts[e.Short] {
			t.Errorf("short name %s used twice", e.Short)
		}
		shorts[e.Short] = true
	}
}

func TestErrors(t *testing.T) {
	big := fstree.New(t0)
	big.Put("big", &fstree.Inode{Mode: fstree.ModeRegular | 0o644, Content: fstree.HostFile{Path: "/dev/null", Length: 300 << 20}})
	sym := fstree.New(t0)
	sym.MkdirAll("dtbs", t0)
	sym.Put("dtbs/current", fstree.NewSymlink("6.1", t0))
	dev := fstree.New(t0)
	dev.Put("null", &fstree.Inode{Mode: fstree.ModeChar | 0o666})
	cased := fstree.New(t0)
	cased.Put("Image", fstree.NewFile(0o644, nil, t0))
	cased.Put("image", fstree.NewFile(0o644, nil, t0))
	colon := fstree.New(t0)
	colon.Put("a:b", fstree.NewFile(0o644, nil, t0))
	for _, tc := range []struct {
		name string
		tr   *fstree.Tree
		opt  Options
		want []string
	}{
		{"too large", big, Options{Size: DefaultSize}, []string{"314572800", "268435456", "larger"}},
		{"symlink", sym, Options{}, []string{"/dtbs/current", "symlink"}},
		{"device", dev, Options{}, []string{"/null", "character device"}},
		{"case", cased, Options{}, []string{"/Image", "/image", "case"}},
		{"colon", colon, Options{}, []string{"a:b"}},
		{"tiny", fstree.New(t0), Options{Size: 16 << 20}, []string{"16777216", "too small"}},
		{"odd size", fstree.New(t0), Options{Size: 1000}, []string{"1000"}},
		{"label", fstree.New(t0), Options{Label: "boot"}, []string{"label"}},
	} {
		var w recordWriter
		_, err := Write(&w, tc.tr, tc.opt)
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		for _, s := range tc.want {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q lacks %q", tc.name, err, s)
			}
		}
		if w.n != 0 {
			t.Errorf("%s: %d writes before the error", tc.name, w.n)
		}
	}
}

type recordWriter struct{ n int }

func (w *recordWriter) WriteAt(b []byte, off int64) (int, error) { w.n++; return len(b), nil }

func TestShortNames(t *testing.T) {
	nm := newNamer()
	if sn, ok := exact83("BOOT.SCR"); !ok || string(sn[:]) != "BOOT    SCR" {
		t.Errorf("exact83(BOOT.SCR) = %q %v", sn, ok)
	}
	nm.taken[pad83("BOOT", "SCR")] = true
	for _, tc := range []struct{ in, want string }{
		{"boot.scr", "BOOT~1  SCR"},
		{"Image", "IMAGE      "},
		{"image.gz", "IMAGE   GZ "},
		{"extlinux.conf", "EXTLIN~1CON"},
		{"extlinux.confx", "EXTLIN~2CON"},
		{".hidden", "HIDDEN~1   "},
		{"a b+c.tar.gz", "AB_CTA~1GZ "},
		{"ÜNICODE", "_NICOD~1   "},
	} {
		sn, err := nm.generate(tc.in)
		if err != nil || string(sn[:]) != tc.want {
			t.Errorf("%q -> %q %v, want %q", tc.in, sn, err, tc.want)
		}
	}
	// Tails past 9 shorten the stem.
	nm = newNamer()
	var last [11]byte
	for i := 0; i < 10; i++ {
		last, _ = nm.generate(fmt.Sprintf("longname-%d.conf", i))
	}
	if string(last[:]) != "LONGN~10CON" {
		t.Errorf("10th name %q", last)
	}
}

func TestLFNChecksum(t *testing.T) {
	// Reference value from the FAT spec's algorithm computed by hand for
	// "EXTLIN~1CON": any change in the short name must change it.
	a := lfnChecksum(pad83("EXTLIN~1", "CON"))
	b := lfnChecksum(pad83("EXTLIN~2", "CON"))
	if a == b {
		t.Error("checksum ignores the tail")
	}
	e := lfnEntries("extlinux.conf", pad83("EXTLIN~1", "CON"))
	if len(e) != 32 || e[0] != 0x41 || e[11] != 0x0f || e[13] != a {
		t.Errorf("entry % x", e)
	}
	// 13 units fill one entry exactly: no terminator, no padding.
	e = lfnEntries("abcdefghijklm", pad83("ABCDEF~1", ""))
	if len(e) != 32 || e[30] != 'm' || e[31] != 0 {
		t.Errorf("13-char entry % x", e)
	}
	e = lfnEntries("abcdefghijklmn", pad83("ABCDEF~1", ""))
	if len(e) != 64 || e[0] != 0x42 || e[32] != 0x01 || e[1] != 'n' || e[3] != 0 || e[5] != 0xff {
		t.Errorf("14-char entries % x", e)
	}
}

func TestFATTime(t *testing.T) {
	for _, tc := range []struct {
		in        time.Time
		date, tim uint16
	}{
		{time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC), 0x21, 0},
		{time.Date(2024, 3, 5, 14, 7, 31, 0, time.UTC), 44<<9 | 3<<5 | 5, 14<<11 | 7<<5 | 15},
		{time.Date(2024, 3, 5, 15, 7, 31, 0, time.FixedZone("CET", 3600)), 44<<9 | 3<<5 | 5, 14<<11 | 7<<5 | 15},
		{time.Time{}, 0x21, 0},
		{time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), 127<<9 | 12<<5 | 31, 23<<11 | 59<<5 | 29},
	} {
		d, tm, _ := fatTime(tc.in)
		if d != tc.date || tm != tc.tim {
			t.Errorf("%v: %#x %#x, want %#x %#x", tc.in, d, tm, tc.date, tc.tim)
		}
	}
}

func TestGeometry(t *testing.T) {
	for _, tc := range []struct {
		size int64
		cb   int64
	}{
		{40 << 20, 512}, {64 << 20, 512}, {DefaultSize, 2048}, {512 << 20, 4096}, {1 << 30, 4096}, {10 << 30, 8192},
	} {
		g := mustGeom(t, tc.size)
		if g.clusterBytes() != tc.cb || g.clusters < minClusters || g.dataOffset()%g.clusterBytes() != 0 ||
			uint64(g.fatSectors)*sectorSize/4 < uint64(g.clusters)+2 ||
			g.dataOffset()+int64(g.clusters)*g.clusterBytes() > tc.size {
			t.Errorf("size %d: %+v", tc.size, g)
		}
	}
}

func TestHostFileContent(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "Image")
	data := make([]byte, 3<<20+5)
	rand.New(rand.NewSource(3)).Read(data)
	os.WriteFile(src, data, 0o644)
	tr := fstree.New(t0)
	tr.Put("Image", &fstree.Inode{Mode: fstree.ModeRegular | 0o644, Mtime: t0, Content: fstree.HostFile{Path: src, Length: int64(len(data))}})
	img, _ := writeImage(t, tr, Options{Size: 64 << 20})
	f, _ := os.Open(img)
	defer f.Close()
	fs, err := Open(f, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := fs.ReadFile("Image"); err != nil || !bytes.Equal(b, data) {
		t.Errorf("host file read back: %d bytes, %v", len(b), err)
	}
	// A source that changed size since the tree was built is an error
	// naming the file, not a silently short file.
	tr.Put("Image", &fstree.Inode{Mode: fstree.ModeRegular | 0o644, Content: fstree.HostFile{Path: src, Length: 100}})
	out, _ := os.Create(filepath.Join(dir, "x.img"))
	defer out.Close()
	if _, err := Write(out, tr, Options{Size: 64 << 20}); err == nil || !strings.Contains(err.Error(), src) {
		t.Errorf("changed source: %v", err)
	}
}

// TestFsckSeesDamage makes sure the fsck check above can fail: a wrong
// free-cluster count in FSInfo must be reported.
func TestFsckSeesDamage(t *testing.T) {
	testenv.NeedTools(t, "fsck.vfat")
	img, _ := writeImage(t, sampleTree(t, 2048), Options{VolumeID: 1})
	f, _ := os.OpenFile(img, os.O_RDWR, 0)
	f.WriteAt([]byte{1, 2, 3, 4}, 512+488)
	f.Close()
	out, _ := exec.Command("fsck.vfat", "-n", img).CombinedOutput()
	if !bytes.Contains(out, []byte("Free cluster summary")) {
		t.Errorf("fsck.vfat did not notice a damaged FSInfo:\n%s", out)
	}
}
