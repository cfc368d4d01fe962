package builder

import (
	"bytes"
	"context"
	"debug/elf"
	"io"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/build/apt"
	"github.com/mkimage/mkimage/internal/cachedir"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/testenv"
)

// libDirs are where Debian's arm64 ld.so looks for libraries when there
// is no ld.so.cache (the minimal root has none: nothing runs ldconfig).
var libDirs = []string{"lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu", "lib", "usr/lib"}

// TestMinimalUpdatableRoot: an updatable minimal root can run `btrfs
// receive`: btrfs is an executable arm64 program on the PATH whose
// loader and every library it needs, directly or through another, are
// in the tree where ld.so finds them; busybox still provides the rest.
// A minimal root that is not updatable gets none of it.
func TestMinimalUpdatableRoot(t *testing.T) {
	testenv.Short(t)
	ctx := context.Background()
	dir := cachedir.Root()
	if err := (&apt.Cache{Dir: filepath.Join(dir, "apt"), Arch: "arm64"}).Update(ctx); err != nil {
		testenv.Missing(t, "apt lists: "+err.Error())
	}
	o := &Options{CacheDir: dir, Epoch: time.Unix(1700000000, 0), Log: io.Discard}
	plain, err := minimalRoot(ctx, o, &inputs{})
	if err != nil {
		t.Fatal(err)
	}
	o.UpdateKeys = "fleet.pub"
	in := &inputs{}
	root, err := minimalRoot(ctx, o, in)
	if err != nil {
		t.Fatal(err)
	}
	ps, rs := plain.Stats(), root.Stats()
	t.Logf("updatable minimal root: %d inodes, %d bytes of file data more; inputs %v", rs.Inodes-ps.Inodes, rs.DataBytes-ps.DataBytes, in.list)

	if _, ok := plain.Lookup("bin/btrfs"); ok {
		t.Error("a minimal root that is not updatable has bin/btrfs")
	}
	notes := map[string]bool{}
	for _, i := range in.list {
		notes[strings.Fields(i.Note)[0]] = i.Kind == "package" && i.SHA256 != ""
	}
	for _, p := range []string{"busybox-static", "btrfs-progs", "libc6"} {
		if !notes[p] {
			t.Errorf("inputs have no package %s with its sha256: %v", p, in.list)
		}
	}

	// nodeinit hands the watchdog on armed: rcS starts busybox's applet
	// to feed it (no package replaced it).
	if n, ok := root.Lookup("sbin/watchdog"); !ok || n.Target != "../bin/busybox" {
		t.Errorf("sbin/watchdog is %+v, want a link to busybox", n)
	}
	if n, ok := root.Lookup("etc/init.d/rcS"); !ok {
		t.Error("no etc/init.d/rcS")
	} else if b, err := fstree.ReadAll(n.Content); err != nil || !bytes.Contains(b, []byte("watchdog -T")) {
		t.Errorf("rcS does not start busybox watchdog (%v):\n%s", err, b)
	}

	btrfs := executable(t, root, "btrfs")
	f, err := elf.NewFile(bytes.NewReader(btrfs))
	if err != nil {
		t.Fatalf("btrfs: %v", err)
	}
	if f.Machine != elf.EM_AARCH64 {
		t.Errorf("btrfs is for %v, not arm64", f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b, err := io.ReadAll(p.Open())
		if err != nil {
			t.Fatal(err)
		}
		interp := strings.TrimRight(string(b), "\x00")
		ld, ok := regular(root, interp)
		if !ok {
			t.Fatalf("btrfs's loader %s is not in the root", interp)
		}
		for _, d := range libDirs[:2] {
			if !bytes.Contains(ld, []byte("/"+d+"/")) {
				t.Errorf("the loader %s does not search /%s", interp, d)
			}
		}
	}
	// Every library needed, through the libraries too.
	seen := map[string]bool{}
	for queue := []*elf.File{f}; len(queue) > 0; queue = queue[1:] {
		libs, err := queue[0].ImportedLibraries()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range libs {
			if seen[l] {
				continue
			}
			seen[l] = true
			data, ok := findLib(root, l)
			if !ok {
				t.Errorf("library %s (needed by btrfs) is in none of %v", l, libDirs)
				continue
			}
			lf, err := elf.NewFile(bytes.NewReader(data))
			if err != nil {
				t.Errorf("library %s: %v", l, err)
				continue
			}
			queue = append(queue, lf)
		}
	}
	if !seen["libc.so.6"] || !seen["libblkid.so.1"] {
		t.Errorf("btrfs needs %v, without libc.so.6 or libblkid.so.1", seen)
	}

	for _, p := range []string{"bin/sh", "sbin/init", "usr/bin/awk"} {
		if n, ok := root.Lookup(p); !ok || n.Type() != fstree.ModeSymlink || path.Base(n.Target) != "busybox" {
			t.Errorf("%s is no longer busybox's", p)
		}
	}
	root.Walk(func(p string, n *fstree.Inode) error {
		doc := strings.HasPrefix(p, "usr/share/doc/") && path.Base(p) != "copyright"
		if n.Type() == fstree.ModeRegular && (doc || strings.HasPrefix(p, "usr/share/man/") || strings.Contains(p, "/gconv/")) {
			t.Errorf("%s is in the minimal root", p)
		}
		return nil
	})
}

// executable returns the program name found on the minimal root's PATH,
// failing t unless it is an executable regular file.
func executable(t *testing.T, root *fstree.Tree, name string) []byte {
	t.Helper()
	for _, d := range []string{"usr/sbin", "usr/bin", "sbin", "bin"} {
		p, err := root.Resolve(path.Join(d, name))
		if err != nil {
			t.Fatal(err)
		}
		n, ok := root.Lookup(p)
		if !ok {
			continue
		}
		if n.Type() != fstree.ModeRegular || n.Mode&0o111 == 0 {
			t.Fatalf("%s is not an executable file (mode %o)", p, n.Mode)
		}
		b, err := fstree.ReadAll(n.Content)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	t.Fatalf("no %s on the PATH", name)
	return nil
}

// regular returns the data of the regular file p names in root,
// following symlinks.
func regular(root *fstree.Tree, p string) ([]byte, bool) {
	r, err := root.Resolve(p)
	if err != nil {
		return nil, false
	}
	n, ok := root.Lookup(r)
	if !ok || n.Type() != fstree.ModeRegular {
		return nil, false
	}
	b, err := fstree.ReadAll(n.Content)
	return b, err == nil
}

// findLib returns the library name from the first of libDirs that has
// it, as ld.so searches them.
func findLib(root *fstree.Tree, name string) ([]byte, bool) {
	for _, d := range libDirs {
		if b, ok := regular(root, path.Join(d, name)); ok {
			return b, true
		}
	}
	return nil, false
}
