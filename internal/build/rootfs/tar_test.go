package rootfs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/testenv"
)

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if b, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, b)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// makeRoot fills a directory with every kind of entry a root file system
// has. It needs root for device nodes, owners and security xattrs.
func makeRoot(t *testing.T) string {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "setfattr", "mknod", "mkfifo", "touch", "truncate")
	dir := filepath.Join(t.TempDir(), "src")
	w := func(p, data string, perm os.FileMode) {
		must(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755))
		must(t, os.WriteFile(filepath.Join(dir, p), []byte(data), perm))
		must(t, os.Chmod(filepath.Join(dir, p), perm)) // umask-free, with setuid bits
	}
	w("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644)
	w("etc/shadow", "root:*:1::::::\n", 0o640)
	w("usr/bin/su", "#!/bin/sh\n", 0o755|os.ModeSetuid)
	must(t, os.Chmod(filepath.Join(dir, "usr/bin/su"), 0o755|os.ModeSetuid))
	w("usr/bin/empty", "", 0o600)
	w("usr/bin/ping", strings.Repeat("ping", 5000), 0o755)
	must(t, os.Link(filepath.Join(dir, "usr/bin/ping"), filepath.Join(dir, "usr/bin/ping4")))
	must(t, os.Link(filepath.Join(dir, "usr/bin/ping"), filepath.Join(dir, "etc/ping6")))
	long := strings.Repeat("long-name-", 15) + "ü.conf"
	w("usr/share/"+long, "long\n", 0o644)
	must(t, os.MkdirAll(filepath.Join(dir, "tmp"), 0o755))
	must(t, os.Chmod(filepath.Join(dir, "tmp"), 0o777|os.ModeSticky))
	must(t, os.MkdirAll(filepath.Join(dir, "var/mail"), 0o755))
	must(t, os.Chmod(filepath.Join(dir, "var/mail"), 0o775|os.ModeSetgid))
	must(t, os.Chown(filepath.Join(dir, "var/mail"), 0, 8))
	must(t, os.MkdirAll(filepath.Join(dir, "home/user"), 0o700))
	must(t, os.Chown(filepath.Join(dir, "home/user"), 1000, 1001))
	w("home/user/.profile", "PATH=/bin\n", 0o644)
	must(t, os.Chown(filepath.Join(dir, "home/user/.profile"), 1000, 1001))
	must(t, os.Symlink("usr/bin", filepath.Join(dir, "bin")))
	must(t, os.Symlink("/etc/passwd", filepath.Join(dir, "etc/abs-link")))
	must(t, os.Symlink("../../../../outside", filepath.Join(dir, "etc/up-link")))
	must(t, os.MkdirAll(filepath.Join(dir, "dev"), 0o755))
	run(t, "mknod", "-m", "666", filepath.Join(dir, "dev/null"), "c", "1", "3")
	run(t, "mknod", "-m", "660", filepath.Join(dir, "dev/loop0"), "b", "7", "0")
	run(t, "mknod", "-m", "600", filepath.Join(dir, "dev/big"), "c", "300", "70000")
	run(t, "mkfifo", "-m", "600", filepath.Join(dir, "dev/initctl"))
	run(t, "setfattr", "-n", "user.comment", "-v", "hello", filepath.Join(dir, "etc/passwd"))
	run(t, "setfattr", "-n", "user.bin", "-v", "0x00ff0010", filepath.Join(dir, "etc/passwd"))
	// cap_net_raw+ep as the kernel stores it (VFS_CAP_REVISION_2).
	run(t, "setfattr", "-n", "security.capability", "-v", "0x0100000200200000000000000000000000000000", filepath.Join(dir, "usr/bin/ping"))
	run(t, "setfattr", "-n", "user.dir", "-v", "d", filepath.Join(dir, "var/mail"))
	// Sparse: 16 MiB with data at 1 MiB and at the very end.
	sp := filepath.Join(dir, "var/disk.img")
	must(t, os.WriteFile(sp, nil, 0o644))
	f, err := os.OpenFile(sp, os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteAt(bytes.Repeat([]byte{7}, 8192), 1<<20)
	must(t, err)
	_, err = f.WriteAt([]byte("end"), 16<<20-3)
	must(t, err)
	must(t, f.Close())
	// Nanosecond times, children before parents so the parents keep theirs.
	var paths []string
	filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		paths = append(paths, p)
		return err
	})
	for i := len(paths) - 1; i >= 0; i-- {
		run(t, "touch", "-h", "-d", "2021-03-04 05:06:07."+strings.Repeat("123456789", 1)[:9-i%3]+" UTC", paths[i])
	}
	return dir
}

func diff(t *testing.T, a, b *fstree.Tree) {
	t.Helper()
	d, err := fstree.Diff(a, b, fstree.DiffOptions{IgnoreAtime: true, IgnoreCtime: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(d) > 0 {
		t.Errorf("trees differ:\n%s", strings.Join(d, "\n"))
	}
}

func TestTarballMatchesSource(t *testing.T) {
	testenv.NeedTools(t, "tar", "gzip", "xz", "zstd")
	src := makeRoot(t)
	want, err := HostDir(src, HostOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The tree must really hold what makeRoot made, or the comparison
	// below proves nothing.
	checkSample(t, want)
	out := t.TempDir()
	for _, c := range []struct{ name, flag string }{
		{"root.tar", ""}, {"root.tar.gz", "--gzip"}, {"root.txz", "--xz"}, {"root.tar.zst", "--zstd"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tb := filepath.Join(out, c.name)
			args := []string{"--create", "--file", tb, "--format=posix", "--xattrs", "--xattrs-include=*", "--sparse", "--numeric-owner", "-C", src, "."}
			if c.flag != "" {
				args = append(args, c.flag)
			}
			run(t, "tar", args...)
			// Name it .bin too: the format comes from the bytes.
			renamed := tb + ".bin"
			must(t, os.Link(tb, renamed))
			got, err := Tarball(renamed, TarOptions{})
			if err != nil {
				t.Fatal(err)
			}
			diff(t, want, got)
			if err := got.Validate(); err != nil {
				t.Error(err)
			}
			n, _ := got.Lookup("var/disk.img")
			sp, ok := n.Content.(fstree.Sparse)
			if !ok {
				t.Fatalf("var/disk.img content is %T, not sparse", n.Content)
			}
			wantExt := []fstree.Extent{{Offset: 1 << 20, Length: 8192}, {Offset: 16<<20 - 4096, Length: 4096}}
			if got := sp.Extents(); !equalExtents(got, wantExt) {
				t.Errorf("extents %v, want %v", got, wantExt)
			}
		})
	}
}

func equalExtents(a, b []fstree.Extent) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// checkSample checks a tree read from makeRoot's directory by hand.
func checkSample(t *testing.T, tr *fstree.Tree) {
	t.Helper()
	get := func(p string) *fstree.Inode {
		n, ok := tr.Lookup(p)
		if !ok {
			t.Fatalf("%s missing", p)
		}
		return n
	}
	if n := get("usr/bin/su"); n.Mode != fstree.ModeRegular|0o4755 {
		t.Errorf("su mode %o", n.Mode)
	}
	if n := get("tmp"); n.Mode != fstree.ModeDir|0o1777 {
		t.Errorf("tmp mode %o", n.Mode)
	}
	if n := get("var/mail"); n.Mode != fstree.ModeDir|0o2775 || n.Gid != 8 || string(n.Xattrs["user.dir"]) != "d" {
		t.Errorf("var/mail = %o %d %q", n.Mode, n.Gid, n.Xattrs)
	}
	if n := get("home/user/.profile"); n.Uid != 1000 || n.Gid != 1001 {
		t.Errorf(".profile owner %d:%d", n.Uid, n.Gid)
	}
	if get("usr/bin/ping") != get("etc/ping6") || get("usr/bin/ping") != get("usr/bin/ping4") {
		t.Error("hard links are not one inode")
	}
	if n := get("usr/bin/ping"); !bytes.Equal(n.Xattrs["security.capability"], []byte{1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}) {
		t.Errorf("ping capability %x", n.Xattrs["security.capability"])
	}
	if n := get("etc/passwd"); !bytes.Equal(n.Xattrs["user.bin"], []byte{0, 0xff, 0, 0x10}) {
		t.Errorf("passwd user.bin %x", n.Xattrs["user.bin"])
	}
	if n := get("dev/null"); n.Mode != fstree.ModeChar|0o666 || n.Major != 1 || n.Minor != 3 {
		t.Errorf("dev/null %o %d:%d", n.Mode, n.Major, n.Minor)
	}
	if n := get("dev/big"); n.Major != 300 || n.Minor != 70000 {
		t.Errorf("dev/big %d:%d", n.Major, n.Minor)
	}
	if n := get("dev/loop0"); n.Type() != fstree.ModeBlock || n.Major != 7 {
		t.Errorf("dev/loop0 %o %d:%d", n.Mode, n.Major, n.Minor)
	}
	if n := get("dev/initctl"); n.Type() != fstree.ModeFIFO {
		t.Errorf("initctl %o", n.Mode)
	}
	if n := get("etc/abs-link"); n.Target != "/etc/passwd" {
		t.Errorf("abs-link -> %q", n.Target)
	}
	if n := get("etc/shadow"); n.Mtime.Nanosecond() == 0 {
		t.Errorf("shadow mtime %v has no nanoseconds", n.Mtime)
	}
	n := get("var/disk.img")
	if n.Size() != 16<<20 {
		t.Errorf("disk.img size %d", n.Size())
	}
	if sp, ok := n.Content.(fstree.Sparse); !ok || len(sp.Extents()) == 0 || sp.Extents()[0].Offset != 1<<20 {
		t.Errorf("disk.img content %T %v", n.Content, n.Content)
	}
	b, err := fstree.ReadAll(n.Content)
	must(t, err)
	if len(b) != 16<<20 || b[1<<20] != 7 || string(b[len(b)-3:]) != "end" || b[0] != 0 {
		t.Error("disk.img content wrong")
	}
}

// entry is one member of a tarball built with archive/tar.
type entry struct {
	name, link string
	typ        byte
	data       string
	pax        map[string]string
	atime      time.Time
	ctime      time.Time
}

func buildTar(t testing.TB, ents []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.data)),
			ModTime: time.Unix(1600000000, 5), PAXRecords: e.pax, Format: tar.FormatPAX,
			AccessTime: e.atime, ChangeTime: e.ctime}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		must(t, tw.WriteHeader(h))
		_, err := tw.Write([]byte(e.data))
		must(t, err)
	}
	must(t, tw.Close())
	return buf.Bytes()
}

func readTar(t *testing.T, data []byte) (*fstree.Tree, error) {
	tr := fstree.New(time.Unix(42, 0))
	return tr, AddTar(tr, "test.tar", bytes.NewReader(data), TarOptions{Epoch: time.Unix(42, 0)})
}

func TestTarRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		ents []entry
		want string
	}{
		{"dotdot", []entry{{name: "a/../../etc/passwd", typ: tar.TypeReg}}, `test.tar: entry "a/../../etc/passwd": path "a/../../etc/passwd" leaves the root (contains ..)`},
		{"absolute", []entry{{name: "/etc/passwd", typ: tar.TypeReg}}, `test.tar: entry "/etc/passwd": absolute path`},
		{"through symlink", []entry{{name: "evil", link: "/etc", typ: tar.TypeSymlink}, {name: "evil/passwd", typ: tar.TypeReg, data: "x"}},
			`test.tar: entry "evil/passwd": evil is not a directory (it is a symlink)`},
		{"through relative symlink", []entry{{name: "d/", typ: tar.TypeDir}, {name: "d/up", link: "../..", typ: tar.TypeSymlink}, {name: "./d/up/x", typ: tar.TypeReg}},
			`test.tar: entry "./d/up/x": d/up is not a directory (it is a symlink)`},
		{"through file", []entry{{name: "f", typ: tar.TypeReg}, {name: "f/x", typ: tar.TypeReg}}, `entry "f/x": f is not a directory (it is a regular file)`},
		{"link to missing", []entry{{name: "a", link: "b", typ: tar.TypeLink}}, `test.tar: entry "a": hard link to "b", which is not in the archive before it`},
		{"link outside", []entry{{name: "a", link: "../etc/shadow", typ: tar.TypeLink}}, `test.tar: entry "a": hard link to "../etc/shadow": path "../etc/shadow" leaves the root`},
		{"link absolute", []entry{{name: "a", link: "/etc/shadow", typ: tar.TypeLink}}, `entry "a": hard link to "/etc/shadow": absolute path`},
		{"link through symlink", []entry{{name: "s", link: "/etc", typ: tar.TypeSymlink}, {name: "a", link: "s/shadow", typ: tar.TypeLink}}, `entry "a": hard link to "s/shadow", which is not in the archive`},
		{"link to dir", []entry{{name: "d/", typ: tar.TypeDir}, {name: "a", link: "d", typ: tar.TypeLink}}, `entry "a": hard link to directory "d"`},
		{"empty symlink", []entry{{name: "s", typ: tar.TypeSymlink}}, `entry "s": symlink with an empty target`},
		{"root as file", []entry{{name: ".", typ: tar.TypeReg}}, `entry ".": the root must be a directory, not a regular file`},
		{"bad libarchive xattr", []entry{{name: "f", typ: tar.TypeReg, pax: map[string]string{"LIBARCHIVE.xattr.user.x": "!!"}}}, `entry "f": PAX record "LIBARCHIVE.xattr.user.x"`},
		{"empty", nil, "test.tar: empty archive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readTar(t, buildTar(t, tc.ents))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestTarEntries(t *testing.T) {
	tr, err := readTar(t, buildTar(t, []entry{
		{name: "./", typ: tar.TypeDir},
		{name: "./a/b/c", typ: tar.TypeReg, data: "first"},
		{name: "a/b/c", typ: tar.TypeReg, data: "second"}, // later wins
		{name: "a/b/", typ: tar.TypeDir},                  // listed after its content: keeps it
		{name: "x", typ: tar.TypeDir},
		{name: "x", typ: tar.TypeReg, data: "file now"}, // a file replaces a directory
		{name: "up", link: "../../../etc/shadow", typ: tar.TypeSymlink},
		{name: "abs", link: "/etc/shadow", typ: tar.TypeSymlink},
		{name: "h", link: "./a/b/c", typ: tar.TypeLink},
		{name: "caps", typ: tar.TypeReg, pax: map[string]string{
			"SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20",
			"LIBARCHIVE.xattr.user.caf%C3%A9":  "dmFsdWU=",
		}, atime: time.Unix(1600000001, 250000000), ctime: time.Unix(1600000002, 7)},
	}))
	if err != nil {
		t.Fatal(err)
	}
	get := func(p string) *fstree.Inode {
		n, ok := tr.Lookup(p)
		if !ok {
			t.Fatalf("%s missing", p)
		}
		return n
	}
	if b, _ := fstree.ReadAll(get("a/b/c").Content); string(b) != "second" {
		t.Errorf("a/b/c = %q", b)
	}
	if a := get("a"); a.Mode != fstree.ModeDir|0o755 || !a.Mtime.Equal(time.Unix(42, 0)) {
		t.Errorf("implicit parent a: mode %o mtime %v", a.Mode, a.Mtime)
	}
	if b := get("a/b"); b.Mode != fstree.ModeDir|0o644 || len(b.Children) != 1 {
		t.Errorf("a/b: mode %o children %d", b.Mode, len(b.Children))
	}
	if x := get("x"); x.Type() != fstree.ModeRegular {
		t.Errorf("x is a %s", fstree.TypeName(x.Mode))
	}
	if get("up").Target != "../../../etc/shadow" || get("abs").Target != "/etc/shadow" {
		t.Error("symlink targets changed")
	}
	if get("h") != get("a/b/c") {
		t.Error("hard link is not the same inode")
	}
	c := get("caps")
	if string(c.Xattrs["security.capability"]) != "\x01\x00\x00\x02\x00\x20" || string(c.Xattrs["user.café"]) != "value" {
		t.Errorf("xattrs %q", c.Xattrs)
	}
	if !c.Mtime.Equal(time.Unix(1600000000, 5)) || !c.Atime.Equal(time.Unix(1600000001, 250000000)) || !c.Ctime.Equal(time.Unix(1600000002, 7)) {
		t.Errorf("times m %v a %v c %v", c.Mtime, c.Atime, c.Ctime)
	}
	if r := tr.Root; r.Mode != fstree.ModeDir|0o644 || len(r.Children) != 6 {
		t.Errorf("root: mode %o, %d children", r.Mode, len(r.Children))
	}
}

func compressed(t testing.TB, kind string, data []byte) []byte {
	var buf bytes.Buffer
	switch kind {
	case "gz":
		z := gzip.NewWriter(&buf)
		z.Write(data)
		must(t, z.Close())
	case "xz":
		z, err := xz.NewWriter(&buf)
		must(t, err)
		z.Write(data)
		must(t, z.Close())
	case "zst":
		z, err := zstd.NewWriter(&buf)
		must(t, err)
		z.Write(data)
		must(t, z.Close())
	default:
		return data
	}
	return buf.Bytes()
}

func TestCorruptTarballs(t *testing.T) {
	// Incompressible, so that cutting the compressed stream cuts data.
	noise := make([]byte, 100000)
	rand.NewChaCha8([32]byte{1}).Read(noise)
	plain := buildTar(t, []entry{{name: "big", typ: tar.TypeReg, data: string(noise)}, {name: "small", typ: tar.TypeReg, data: "x"}})
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"truncated tar", plain[:50000], "root.tar: entry \"big\": reading the 100000 bytes its header gives: unexpected EOF"},
		{"truncated header", plain[:700], "root.tar: after 0 entries: truncated (no end-of-archive marker)"},
		{"cut at a block boundary", plain[:len(plain)-1024], "root.tar: after 2 entries: truncated (no end-of-archive marker)"},
		{"garbage", bytes.Repeat([]byte("garbage!"), 200), "root.tar: after 0 entries: archive/tar: invalid tar header"},
		{"truncated gz", compressed(t, "gz", plain)[:300], "root.tar (gzip): "},
		{"truncated xz", compressed(t, "xz", plain)[:300], "root.tar (xz): "},
		{"truncated zst", compressed(t, "zst", plain)[:300], "root.tar (zstd): "},
		{"gz header only", compressed(t, "gz", plain)[:5], "root.tar: gzip: unexpected EOF"},
		{"xz header only", compressed(t, "xz", plain)[:8], "root.tar: xz: "},
		{"bad gz body", append(compressed(t, "gz", plain)[:20:20], bytes.Repeat([]byte{0xff}, 100)...), "root.tar (gzip): "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "root.tar")
			must(t, os.WriteFile(p, tc.data, 0o644))
			_, err := Tarball(p, TarOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), p) {
				t.Errorf("err = %v, want it to start with the path and contain %q", err, tc.want)
			} else {
				t.Log(err)
			}
		})
	}
	// The same archives whole are fine.
	for _, kind := range []string{"", "gz", "xz", "zst"} {
		tr, err := readTar(t, compressed(t, kind, plain))
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if n, ok := tr.Lookup("big"); !ok || n.Size() != 100000 {
			t.Errorf("%s: big missing or wrong", kind)
		}
	}
}

func TestFollowDirSymlinks(t *testing.T) {
	merged := []entry{
		{name: "usr/lib/", typ: tar.TypeDir},
		{name: "lib", link: "usr/lib", typ: tar.TypeSymlink},
		{name: "bin", link: "/usr/bin", typ: tar.TypeSymlink},
		{name: "usr/bin/", typ: tar.TypeDir},
		{name: "up", link: "../../../../usr", typ: tar.TypeSymlink},
		{name: "loop", link: "loop", typ: tar.TypeSymlink},
	}
	pkg := []entry{
		{name: "./lib/", typ: tar.TypeDir},
		{name: "./lib/modules/6.1/kernel/a.ko", typ: tar.TypeReg, data: "ko"},
		{name: "./bin/sh", typ: tar.TypeReg, data: "sh"},
		{name: "./up/share/doc", typ: tar.TypeReg, data: "doc"},
		{name: "./bin/sh2", link: "./bin/sh", typ: tar.TypeLink},
	}
	tr := fstree.New(time.Unix(0, 0))
	opt := TarOptions{FollowDirSymlinks: true}
	must(t, AddTar(tr, "base.tar", bytes.NewReader(buildTar(t, merged)), opt))
	must(t, AddTar(tr, "pkg.tar", bytes.NewReader(buildTar(t, pkg)), opt))
	for p, want := range map[string]string{"usr/lib/modules/6.1/kernel/a.ko": "ko", "usr/bin/sh": "sh", "usr/share/doc": "doc", "usr/bin/sh2": "sh"} {
		n, ok := tr.Lookup(p)
		if !ok {
			t.Errorf("%s missing", p)
			continue
		}
		if b, _ := fstree.ReadAll(n.Content); string(b) != want {
			t.Errorf("%s = %q", p, b)
		}
	}
	if n, _ := tr.Lookup("lib"); n.Type() != fstree.ModeSymlink {
		t.Errorf("lib became a %s", fstree.TypeName(n.Mode))
	}
	a, _ := tr.Lookup("usr/bin/sh")
	b, _ := tr.Lookup("usr/bin/sh2")
	if a != b {
		t.Error("hard link through a symlink is not the same inode")
	}
	err := AddTar(tr, "loop.tar", bytes.NewReader(buildTar(t, []entry{{name: "loop/x", typ: tar.TypeReg}})), opt)
	if err == nil || !strings.Contains(err.Error(), `loop.tar: entry "loop/x": too many levels of symlinks at loop`) {
		t.Errorf("loop: %v", err)
	}
	// Without the option the same package is refused.
	err = AddTar(tr, "pkg.tar", bytes.NewReader(buildTar(t, pkg)), TarOptions{})
	if err == nil || !strings.Contains(err.Error(), `entry "./bin/sh": bin is not a directory (it is a symlink)`) {
		t.Errorf("without FollowDirSymlinks: %v", err)
	}
}
