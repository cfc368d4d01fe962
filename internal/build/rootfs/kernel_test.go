package rootfs

import (
	"bytes"
	"compress/gzip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ulikunitz/xz"

	"github.com/mkimage/mkimage/internal/build/deb"
	"github.com/mkimage/mkimage/internal/build/kmod/kmodtest"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/testenv"
)

func TestKernelDebian(t *testing.T) {
	p := kmodtest.Deb(t, "linux-image-")
	ver := strings.TrimPrefix(strings.SplitN(filepath.Base(p), "_", 2)[0], "linux-image-")
	start := time.Now()
	k, err := ReadKernel(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("read %s in %v: %d modules, %d dtbs, Image %d bytes", filepath.Base(p), time.Since(start), len(k.ModuleNames()), len(k.DTBs), len(k.Image))
	if k.Version != ver {
		t.Errorf("version %q", k.Version)
	}
	for _, dtb := range []string{"amlogic/meson-gxbb-odroidc2.dtb", "marvell/armada-8040-mcbin.dtb"} {
		b, err := k.DTB(dtb)
		if err != nil || !bytes.HasPrefix(b, []byte{0xd0, 0x0d, 0xfe, 0xed}) {
			t.Errorf("%s: %v (%d bytes)", dtb, err, len(b))
		}
	}
	if p, ok := k.ModulePath("btrfs"); !ok || p != "lib/modules/"+ver+"/kernel/fs/btrfs/btrfs.ko" {
		t.Errorf("btrfs at %q", p)
	}
	for _, m := range []string{"btrfs", "virtio-blk", "virtio_blk", "libcrc32c", "meson-gx-mmc"} {
		b, err := k.Module(m)
		if err != nil || !bytes.HasPrefix(b, []byte("\x7fELF")) {
			t.Errorf("module %s: %v", m, err)
		}
	}
	if _, err := k.Module("no-such-module"); err == nil || err.Error() != `kernel `+ver+` has no module "no-such-module"` {
		t.Errorf("missing module: %v", err)
	}
	if n, ok := k.Modules.Lookup("lib/modules/" + ver + "/modules.order"); !ok || n.Size() == 0 {
		t.Error("modules.order missing")
	}
}

// fakeImage is enough of an arm64 Image header to pass the magic check.
func fakeImage() []byte {
	b := make([]byte, 4096)
	copy(b, "MZ")
	copy(b[56:], "ARM\x64")
	return b
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	z := gzip.NewWriter(&buf)
	z.Write(b)
	z.Close()
	return buf.Bytes()
}

func writeFiles(t *testing.T, root string, files map[string][]byte) {
	t.Helper()
	for p, b := range files {
		must(t, os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755))
		must(t, os.WriteFile(filepath.Join(root, p), b, 0o644))
	}
}

func TestKernelDir(t *testing.T) {
	dir := t.TempDir()
	var xzMod bytes.Buffer
	z, _ := xz.NewWriter(&xzMod)
	z.Write([]byte("\x7fELF compressed module"))
	z.Close()
	writeFiles(t, dir, map[string][]byte{
		"Image.gz":                                   gz(fakeImage()),
		"dtbs/amlogic/meson-gxbb-odroidc2.dtb":       []byte("dtb"),
		"lib/modules/6.9.0/kernel/fs/foo-bar.ko":     []byte("\x7fELF foo"),
		"lib/modules/6.9.0/kernel/drivers/baz.ko.xz": xzMod.Bytes(),
		"lib/modules/6.9.0/modules.order":            []byte("kernel/fs/foo-bar.ko\n"),
	})
	k, err := ReadKernel(dir)
	if err != nil {
		t.Fatal(err)
	}
	if k.Version != "6.9.0" || !bytes.Equal(k.Image, fakeImage()) {
		t.Errorf("version %q, image %d bytes", k.Version, len(k.Image))
	}
	if b, _ := k.DTB("amlogic/meson-gxbb-odroidc2.dtb"); string(b) != "dtb" {
		t.Errorf("dtb %q", b)
	}
	if b, err := k.Module("foo_bar"); err != nil || string(b) != "\x7fELF foo" {
		t.Errorf("foo_bar: %q %v", b, err)
	}
	if b, err := k.Module("baz"); err != nil || string(b) != "\x7fELF compressed module" {
		t.Errorf("baz: %q %v", b, err)
	}
	if got := strings.Join(k.ModuleNames(), " "); got != "baz foo_bar" {
		t.Errorf("modules %q", got)
	}
	if n, ok := k.Modules.Lookup("lib/modules/6.9.0/kernel/fs/foo-bar.ko"); !ok || n.Uid != 0 {
		t.Error("modules tree wrong")
	}
}

func TestKernelErrors(t *testing.T) {
	mk := func(files map[string][]byte) string {
		dir := t.TempDir()
		writeFiles(t, dir, files)
		return dir
	}
	mod := map[string][]byte{"lib/modules/1.0/kernel/a.ko": []byte("x")}
	with := func(extra map[string][]byte) map[string][]byte {
		m := map[string][]byte{}
		for k, v := range mod {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		name string
		path string
		want string
	}{
		{"no image", mk(mod), "no kernel image (Image or Image.gz)"},
		{"no modules", mk(map[string][]byte{"Image": fakeImage()}), "no modules directory lib/modules/<version>"},
		{"two versions", mk(with(map[string][]byte{"Image": fakeImage(), "lib/modules/2.0/x": nil})), "want exactly one lib/modules/<version>, found 2 (1.0, 2.0)"},
		{"not arm64", mk(with(map[string][]byte{"Image": []byte("hello")})), "kernel image: not an arm64 Image"},
		{"bad gzip", mk(with(map[string][]byte{"Image.gz": gz(fakeImage())[:30]})), "kernel image: gzip: unexpected EOF"},
		{"same module twice", mk(with(map[string][]byte{"Image": fakeImage(), "lib/modules/1.0/b/a.ko": nil})), "module a twice"},
		{"not a kernel package", buildDeb(t, "busybox", map[string][]byte{"bin/busybox": []byte("x")}), "not a kernel package (package \"busybox\" is not linux-image-*)"},
		{"deb without vmlinuz", buildDeb(t, "linux-image-1.0", mod), "not a kernel package: no boot/vmlinuz-*"},
		{"deb without modules", buildDeb(t, "linux-image-1.0", map[string][]byte{"boot/vmlinuz-1.0": fakeImage()}), "no modules directory lib/modules/1.0"},
		{"missing", "/nonexistent/kernel.deb", "/nonexistent/kernel.deb: no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadKernel(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
				t.Errorf("err = %v, want %q and the path", err, tc.want)
			}
		})
	}
}

// buildDeb makes a package holding files with dpkg-deb.
func buildDeb(t *testing.T, name string, files map[string][]byte) string {
	t.Helper()
	testenv.NeedTools(t, "dpkg-deb")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	writeFiles(t, root, files)
	writeFiles(t, root, map[string][]byte{"DEBIAN/control": []byte("Package: " + name +
		"\nVersion: 1.0\nArchitecture: arm64\nMaintainer: A <a@b>\nDescription: test\n")})
	out := filepath.Join(dir, name+".deb")
	if b, err := exec.Command("dpkg-deb", "--root-owner-group", "--build", root, out).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, b)
	}
	return out
}

func TestFromDeb(t *testing.T) {
	p := buildDeb(t, "hello", map[string][]byte{"usr/bin/hello": []byte("hi"), "etc/hello.conf": []byte("x=1")})
	pkg, err := deb.Open(p)
	must(t, err)
	tr, err := FromDeb(pkg, TarOptions{})
	must(t, err)
	if n, ok := tr.Lookup("usr/bin/hello"); !ok || n.Uid != 0 {
		t.Fatal("usr/bin/hello missing or not root-owned")
	} else if b, _ := fstree.ReadAll(n.Content); string(b) != "hi" {
		t.Errorf("content %q", b)
	}
	if _, ok := tr.Lookup("DEBIAN"); ok {
		t.Error("control files leaked into the tree")
	}
	// Two packages in one tree: both sets of files.
	p2 := buildDeb(t, "other", map[string][]byte{"usr/bin/other": []byte("o")})
	pkg2, err := deb.Open(p2)
	must(t, err)
	must(t, AddDeb(tr, pkg2, TarOptions{}))
	for _, f := range []string{"usr/bin/hello", "usr/bin/other", "etc/hello.conf"} {
		if _, ok := tr.Lookup(f); !ok {
			t.Errorf("%s missing after AddDeb", f)
		}
	}
}

func TestFromDebBusybox(t *testing.T) {
	p := kmodtest.Deb(t, "busybox-static_")
	pkg, err := deb.Open(p)
	must(t, err)
	tr, err := FromDeb(pkg, TarOptions{})
	must(t, err)
	n, ok := tr.Lookup("bin/busybox")
	if !ok || n.Mode != fstree.ModeRegular|0o755 || n.Size() < 100000 {
		t.Fatalf("bin/busybox: %v", n)
	}
	b, _ := fstree.ReadAll(n.Content)
	if !bytes.HasPrefix(b, []byte("\x7fELF\x02\x01")) || b[18] != 0xb7 { // EM_AARCH64
		t.Error("bin/busybox is not an arm64 ELF")
	}
}

// dpkg-deb's own extraction, read back from disk, must equal ours.
func TestFromDebMatchesDpkg(t *testing.T) {
	testenv.NeedRoot(t) // dpkg-deb -x keeps owners only as root
	testenv.NeedTools(t, "dpkg-deb")
	for _, p := range []string{
		kmodtest.Deb(t, "busybox-static_"),
		buildDeb(t, "hello", map[string][]byte{"usr/bin/hello": []byte("hi"), "usr/share/doc/hello/x": nil}),
	} {
		testenv.NeedFile(t, p)
		out := t.TempDir()
		if b, err := exec.Command("dpkg-deb", "-x", p, out).CombinedOutput(); err != nil {
			t.Fatalf("dpkg-deb -x: %v\n%s", err, b)
		}
		want, err := HostDir(out, HostOptions{})
		must(t, err)
		pkg, err := deb.Open(p)
		must(t, err)
		got, err := FromDeb(pkg, TarOptions{})
		must(t, err)
		d, err := fstree.Diff(want, got, fstree.DiffOptions{IgnoreAtime: true, IgnoreCtime: true, IgnoreRoot: true})
		must(t, err)
		if len(d) > 0 {
			t.Errorf("%s: dpkg-deb -x and FromDeb differ:\n%s", filepath.Base(p), strings.Join(d, "\n"))
		}
		if s := got.Stats(); s.Entries < 4 {
			t.Errorf("%s: only %d entries", p, s.Entries)
		}
	}
}
