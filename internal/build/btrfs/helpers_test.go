package btrfs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/build/rootfs"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/fstree/fstreetest"
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

// compareTree checks that the mounted tree at dir matches src: it reads
// the mount back with rootfs.HostDir and compares with fstree.Diff
// (names, types, owner, mode, all three times to the nanosecond, rdev,
// xattrs, symlink targets, content, hard-link groups), then checks the
// link count the kernel reports for every non-directory. A zero time in
// src is expected back as the Unix epoch, as the writer stores it. A
// path in skip is left out, with everything below it, when both sides
// have it.
func compareTree(t testing.TB, dir string, src *fstree.Tree, skip map[string]bool) {
	t.Helper()
	compareTreeOpts(t, dir, src, skip, fstree.DiffOptions{})
}

// compareTreeOpts is compareTree with diff options (IgnoreCtime where
// btrfs receive made the files: it cannot set ctime).
func compareTreeOpts(t testing.TB, dir string, src *fstree.Tree, skip map[string]bool, opts fstree.DiffOptions) {
	t.Helper()
	got, err := rootfs.HostDir(dir, rootfs.HostOptions{})
	if err != nil {
		t.Errorf("reading back %s: %v", dir, err)
		return
	}
	want := fstreetest.EpochTimes(src)
	for p := range skip {
		_, inWant := want.Lookup(p)
		_, inGot := got.Lookup(p)
		if p != "" && inWant && inGot {
			for _, tr := range []*fstree.Tree{want, got} {
				parent, _ := tr.Lookup(path.Dir(p))
				delete(parent.Children, path.Base(p))
			}
		}
	}
	diffs, err := fstree.Diff(want, got, opts)
	if err != nil {
		diffs = append(diffs, err.Error())
	}
	// Link counts as the image should have them: names per inode.
	names := map[*fstree.Inode]int{}
	src.Walk(func(p string, n *fstree.Inode) error {
		names[n]++
		return nil
	})
	src.Walk(func(p string, n *fstree.Inode) error {
		if n.IsDir() {
			return nil
		}
		if _, ok := got.Lookup(p); !ok {
			return nil // missing (or skipped): Diff has it
		}
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, p), &st); err != nil {
			diffs = append(diffs, fmt.Sprintf("/%s: %v", p, err))
		} else if int(st.Nlink) != names[n] {
			diffs = append(diffs, fmt.Sprintf("/%s: %d links, want %d", p, st.Nlink, names[n]))
		}
		return nil
	})
	for i, d := range diffs {
		if i < 19 {
			t.Errorf("%s", d)
		}
	}
	if len(diffs) > 0 {
		t.Errorf("%d differences between the tree (a) and the mounted image (b)", len(diffs))
	}
}
