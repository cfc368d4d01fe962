package rootfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/fstree"
)

func TestHostDirOwners(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o640))
	if os.Geteuid() == 0 {
		must(t, os.Chown(filepath.Join(dir, "f"), 1234, 5678))
		must(t, os.Chown(dir, 1234, 5678))
	}
	// An ordinary user's files keep the user's ids unless mapped.
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	if os.Geteuid() == 0 {
		uid, gid = 1234, 5678
	}
	for _, tc := range []struct {
		opt      HostOptions
		uid, gid uint32
	}{
		{HostOptions{}, uid, gid},
		{HostOptions{RootOwned: true}, 0, 0},
	} {
		tr, err := HostDir(dir, tc.opt)
		must(t, err)
		n, _ := tr.Lookup("f")
		if n.Uid != tc.uid || n.Gid != tc.gid || tr.Root.Uid != tc.uid {
			t.Errorf("%+v: owner %d:%d, root %d, want %d:%d", tc.opt, n.Uid, n.Gid, tr.Root.Uid, tc.uid, tc.gid)
		}
		if n.Mode != fstree.ModeRegular|0o640 {
			t.Errorf("mode %o", n.Mode)
		}
	}
}

func TestHostDirTimesAndLinks(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a")
	must(t, os.WriteFile(a, []byte("data"), 0o644))
	must(t, os.Link(a, filepath.Join(dir, "b")))
	must(t, os.Symlink("a", filepath.Join(dir, "s")))
	when := time.Date(2022, 1, 2, 3, 4, 5, 987654321, time.UTC)
	must(t, os.Chtimes(a, when.Add(time.Hour), when))
	tr, err := HostDir(dir, HostOptions{})
	must(t, err)
	na, _ := tr.Lookup("a")
	nb, _ := tr.Lookup("b")
	if na != nb {
		t.Error("hard links are two inodes")
	}
	if !na.Mtime.Equal(when) || !na.Atime.Equal(when.Add(time.Hour)) {
		t.Errorf("times m %v a %v", na.Mtime, na.Atime)
	}
	if _, ok := na.Content.(fstree.HostFile); !ok {
		t.Errorf("content is %T, want lazy HostFile", na.Content)
	}
	// For images: the atime a read moves is not taken.
	stable, err := HostDir(dir, HostOptions{MtimeAsAtime: true})
	must(t, err)
	if n, _ := stable.Lookup("a"); !n.Atime.Equal(when) {
		t.Errorf("MtimeAsAtime: atime %v, want the mtime %v", n.Atime, when)
	}
	s, _ := tr.Lookup("s")
	if s.Type() != fstree.ModeSymlink || s.Target != "a" {
		t.Errorf("s = %o -> %q", s.Mode, s.Target)
	}
	// Content is read when asked, and a file that changed size is caught.
	must(t, os.WriteFile(a, []byte("longer data"), 0o644))
	if _, err := fstree.ReadAll(na.Content); err == nil || !strings.Contains(err.Error(), "changed size") {
		t.Errorf("read of a changed file: %v", err)
	}
}

func TestHostDirErrors(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "file")
	must(t, os.WriteFile(f, nil, 0o644))
	if _, err := HostDir(f, HostOptions{}); err == nil || err.Error() != f+": not a directory (it is a regular file)" {
		t.Errorf("file: %v", err)
	}
	missing := filepath.Join(dir, "missing")
	if _, err := HostDir(missing, HostOptions{}); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing: %v", err)
	}
	// A symlink to a directory is not followed: it is not a directory.
	must(t, os.Symlink(dir, filepath.Join(dir, "link")))
	if _, err := HostDir(filepath.Join(dir, "link"), HostOptions{}); err == nil || !strings.Contains(err.Error(), "it is a symlink") {
		t.Errorf("symlink: %v", err)
	}
	if os.Geteuid() != 0 {
		locked := filepath.Join(dir, "locked")
		must(t, os.Mkdir(locked, 0))
		if _, err := HostDir(dir, HostOptions{}); err == nil || !strings.Contains(err.Error(), locked) {
			t.Errorf("unreadable dir: %v", err)
		}
	}
}
