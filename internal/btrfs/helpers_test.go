package btrfs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/testenv"
)

// WriteImageFile writes t as a btrfs image file at path (truncated to
// the filesystem size) and returns the result. Other packages' tests and
// the integrator can copy this pattern.
func WriteImageFile(path string, t *fstree.Tree, o Options) (*Result, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	res, err := Write(f, t, o)
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(res.Size); err != nil {
		return nil, err
	}
	return res, f.Close()
}

func writeImage(t testing.TB, tree *fstree.Tree, o Options) (string, *Result) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "fs.img")
	res, err := WriteImageFile(img, tree, o)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	return img, res
}

// btrfsCheck runs btrfs check, with and without data csum checking.
func btrfsCheck(t testing.TB, img string) {
	t.Helper()
	testenv.NeedTools(t, "btrfs")
	for _, args := range [][]string{{"check", "--readonly", img}, {"check", "--readonly", "--check-data-csum", img}} {
		out, err := exec.Command("btrfs", args...).CombinedOutput()
		if err != nil || bytes.Contains(out, []byte("ERROR")) || !bytes.Contains(out, []byte("no error found")) {
			t.Fatalf("btrfs %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

func sha256File(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// mountMu serialises loop mounts of this package's tests.
var mountMu sync.Mutex

// mount loop-mounts img (read-only unless rw) on a fresh directory and
// unmounts it at cleanup.
func mount(t testing.TB, img string, rw bool, extra ...string) string {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "mount", "umount", "losetup")
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := "loop"
	if !rw {
		opts = "ro,loop"
	}
	for _, e := range extra {
		opts += "," + e
	}
	out, err := exec.Command("mount", "-t", "btrfs", "-o", opts, img, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("mount -o %s %s: %v\n%s\n%s", opts, img, err, out, dmesgTail())
	}
	t.Cleanup(func() { umount(t, dir) })
	return dir
}

func umount(t testing.TB, dir string) {
	// The loop device goes with the mount (autoclear); detach it too if
	// it lingers.
	b, err := exec.Command("findmnt", "-n", "-o", "SOURCE", "--mountpoint", dir).Output()
	if err != nil {
		return // not mounted (any more)
	}
	dev, _, _ := strings.Cut(strings.TrimSpace(string(b)), "[")
	if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
		t.Errorf("umount %s: %v\n%s", dir, err, out)
	}
	if strings.HasPrefix(dev, "/dev/loop") {
		exec.Command("losetup", "-d", dev).Run()
	}
}

func dmesgTail() string {
	out, _ := exec.Command("sh", "-c", "dmesg | tail -20").CombinedOutput()
	return string(out)
}

// kernelComplaints returns new "BTRFS critical"/"corrupt" lines since the
// mark returned by dmesgMark.
func dmesgMark() int {
	out, _ := exec.Command("dmesg").Output()
	return bytes.Count(out, []byte("\n"))
}

func kernelComplaints(mark int) []string {
	out, _ := exec.Command("dmesg").Output()
	lines := strings.Split(string(out), "\n")
	var bad []string
	for _, ln := range lines[min(mark, len(lines)):] {
		l := strings.ToLower(ln)
		if strings.Contains(ln, "BTRFS critical") || strings.Contains(ln, "BTRFS error") || strings.Contains(l, "corrupt") {
			bad = append(bad, ln)
		}
	}
	return bad
}

// compareTree checks that the mounted tree at dir matches src: types,
// content, owner, mode, mtime (to the nanosecond), rdev, xattrs, link
// counts and symlink targets.
func compareTree(t testing.TB, dir string, src *fstree.Tree, skip map[string]bool) {
	t.Helper()
	// Link counts as the image should have them: names per inode.
	names := map[*fstree.Inode]int{}
	src.Walk(func(p string, n *fstree.Inode) error {
		names[n]++
		return nil
	})
	nerr := 0
	fail := func(format string, a ...any) {
		nerr++
		if nerr < 20 {
			t.Errorf(format, a...)
		}
	}
	var walkErr error
	src.Walk(func(p string, n *fstree.Inode) error {
		if skip[p] {
			return nil
		}
		for s := range skip {
			if strings.HasPrefix(p, s+"/") {
				return nil
			}
		}
		full := filepath.Join(dir, p)
		var st unix.Stat_t
		if err := unix.Lstat(full, &st); err != nil {
			fail("/%s: %v", p, err)
			return nil
		}
		if st.Mode != n.Mode&(fstree.ModeType|fstree.ModePerm) {
			fail("/%s: mode %#o, want %#o", p, st.Mode, n.Mode)
		}
		if st.Uid != n.Uid || st.Gid != n.Gid {
			fail("/%s: owner %d:%d, want %d:%d", p, st.Uid, st.Gid, n.Uid, n.Gid)
		}
		if got := time.Unix(st.Mtim.Unix()); !got.Equal(n.Mtime) && !(n.Mtime.IsZero() && got.Unix() == 0) {
			fail("/%s: mtime %v, want %v", p, got, n.Mtime)
		}
		// Read-only mounts leave atime alone; ctime is the kernel's
		// view of the stored ctime.
		if got := time.Unix(st.Atim.Unix()); !got.Equal(n.Atime) && !(n.Atime.IsZero() && got.Unix() == 0) {
			fail("/%s: atime %v, want %v", p, got, n.Atime)
		}
		if got := time.Unix(st.Ctim.Unix()); !got.Equal(n.Ctime) && !(n.Ctime.IsZero() && got.Unix() == 0) {
			fail("/%s: ctime %v, want %v", p, got, n.Ctime)
		}
		if p != "" && !n.IsDir() && int(st.Nlink) != names[n] {
			fail("/%s: %d links, want %d", p, st.Nlink, names[n])
		}
		switch n.Type() {
		case fstree.ModeRegular:
			if st.Size != n.Size() {
				fail("/%s: size %d, want %d", p, st.Size, n.Size())
				return nil
			}
			if err := sameContent(full, n.Content); err != nil {
				fail("/%s: %v", p, err)
			}
		case fstree.ModeSymlink:
			target, err := os.Readlink(full)
			if err != nil || target != n.Target {
				fail("/%s: symlink %q (%v), want %q", p, target, err, n.Target)
			}
		case fstree.ModeChar, fstree.ModeBlock:
			if unix.Major(st.Rdev) != n.Major || unix.Minor(st.Rdev) != n.Minor {
				fail("/%s: device %d:%d, want %d:%d", p, unix.Major(st.Rdev), unix.Minor(st.Rdev), n.Major, n.Minor)
			}
		case fstree.ModeDir:
			ents, err := os.ReadDir(full)
			if err != nil {
				fail("/%s: %v", p, err)
			} else if len(ents) != len(n.Children) {
				fail("/%s: %d entries, want %d", p, len(ents), len(n.Children))
			}
		}
		got, err := listXattrs(full)
		if err != nil {
			fail("/%s: xattrs: %v", p, err)
		} else if want := xattrString(n.Xattrs); got != want {
			fail("/%s: xattrs\n got %s\nwant %s", p, got, want)
		}
		return nil
	})
	if walkErr != nil {
		t.Error(walkErr)
	}
	if nerr > 0 {
		t.Errorf("%d differences between the mounted image and the tree", nerr)
	}
}

func sameContent(path string, c fstree.Content) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader = bytes.NewReader(nil)
	if c != nil {
		rc, err := c.Open()
		if err != nil {
			return err
		}
		defer rc.Close()
		r = rc
	}
	a := make([]byte, 1<<20)
	b := make([]byte, 1<<20)
	var off int64
	for {
		n1, e1 := io.ReadFull(f, a)
		n2, e2 := io.ReadFull(r, b)
		if n1 != n2 || !bytes.Equal(a[:n1], b[:n2]) {
			return fmt.Errorf("content differs near byte %d", off)
		}
		off += int64(n1)
		if e1 != nil || e2 != nil {
			return nil
		}
	}
}

func listXattrs(path string) (string, error) {
	m := map[string][]byte{}
	sz, err := unix.Llistxattr(path, nil)
	if err != nil {
		return "", err
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(path, buf)
	if err != nil {
		return "", err
	}
	for _, name := range strings.Split(string(buf[:sz]), "\x00") {
		if name == "" {
			continue
		}
		vsz, err := unix.Lgetxattr(path, name, nil)
		if err != nil {
			return "", err
		}
		v := make([]byte, vsz)
		vsz, err = unix.Lgetxattr(path, name, v)
		if err != nil {
			return "", err
		}
		m[name] = v[:vsz]
	}
	return xattrString(m), nil
}

func xattrString(m map[string][]byte) string {
	var s []string
	for k, v := range m {
		s = append(s, fmt.Sprintf("%s=%x", k, v))
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

// hostTree reads a directory of the build host into a tree: lstat
// metadata with nanosecond times, xattrs, hard links by (dev, ino),
// device numbers, file data read lazily.
func hostTree(root string) (*fstree.Tree, error) {
	seen := map[[2]uint64]*fstree.Inode{}
	var read func(p string) (*fstree.Inode, error)
	read = func(p string) (*fstree.Inode, error) {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return nil, err
		}
		id := [2]uint64{st.Dev, st.Ino}
		if n, ok := seen[id]; ok && st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			return n, nil
		}
		n := &fstree.Inode{
			Mode: st.Mode, Uid: st.Uid, Gid: st.Gid,
			Atime: time.Unix(st.Atim.Unix()), Mtime: time.Unix(st.Mtim.Unix()), Ctime: time.Unix(st.Ctim.Unix()),
		}
		seen[id] = n
		xs, err := listXattrMap(p)
		if err != nil {
			return nil, err
		}
		if len(xs) > 0 {
			n.Xattrs = xs
		}
		switch n.Type() {
		case fstree.ModeRegular:
			n.Content = fstree.HostFile{Path: p, Length: st.Size}
		case fstree.ModeSymlink:
			n.Target, err = os.Readlink(p)
			if err != nil {
				return nil, err
			}
		case fstree.ModeChar, fstree.ModeBlock:
			n.Major, n.Minor = unix.Major(st.Rdev), unix.Minor(st.Rdev)
		case fstree.ModeDir:
			n.Children = map[string]*fstree.Inode{}
			ents, err := os.ReadDir(p)
			if err != nil {
				return nil, err
			}
			for _, e := range ents {
				c, err := read(filepath.Join(p, e.Name()))
				if err != nil {
					return nil, err
				}
				n.Children[e.Name()] = c
			}
		}
		return n, nil
	}
	r, err := read(root)
	if err != nil {
		return nil, err
	}
	return &fstree.Tree{Root: r}, nil
}

func listXattrMap(path string) (map[string][]byte, error) {
	sz, err := unix.Llistxattr(path, nil)
	if err != nil || sz == 0 {
		if err == unix.ENOTSUP {
			err = nil
		}
		return nil, err
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(path, buf)
	if err != nil {
		return nil, err
	}
	m := map[string][]byte{}
	for _, name := range strings.Split(string(buf[:sz]), "\x00") {
		if name == "" {
			continue
		}
		v := make([]byte, 65536)
		vsz, err := unix.Lgetxattr(path, name, v)
		if err != nil {
			return nil, err
		}
		m[name] = append([]byte(nil), v[:vsz]...)
	}
	return m, nil
}
