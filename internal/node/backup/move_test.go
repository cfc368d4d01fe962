package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/node/btrfsctl"
	"github.com/mkimage/mkimage/internal/testenv"
	"golang.org/x/sys/unix"
)

func needMoveEnv(t *testing.T) {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "btrfs", "mkfs.btrfs", "mount", "umount", "losetup", "cp", "rsync")
}

// moveNode is a node root on its own scratch btrfs with the containers'
// subvolume, as a node has it.
func moveNode(t *testing.T) Node {
	root := testenv.ScratchBtrfs(t)
	if err := os.MkdirAll(filepath.Join(root, "var/lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := btrfsctl.Create(filepath.Join(root, ContainersSubvolume)); err != nil {
		t.Fatal(err)
	}
	return Node{Root: root, Log: t.Logf}
}

// treeOf describes every entry under dir: type and mode, owner, size,
// content hash or link target, xattrs and link count.
func treeOf(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		what := ""
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			what = fmt.Sprintf("%x", sha256.Sum256(data))
		case unix.S_IFLNK:
			what, _ = os.Readlink(p)
		}
		var xs []string
		buf := make([]byte, 4096)
		if n, err := unix.Llistxattr(p, buf); err == nil {
			for _, k := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
				if k == "" {
					continue
				}
				v := make([]byte, 256)
				m, _ := unix.Lgetxattr(p, k, v)
				xs = append(xs, k+"="+string(v[:max(m, 0)]))
			}
		}
		sort.Strings(xs)
		nlink := uint64(1)
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			nlink = uint64(st.Nlink)
		}
		lines = append(lines, fmt.Sprintf("%s %o %d:%d %d %s [%s] %d", rel, st.Mode, st.Uid, st.Gid, st.Size, what, strings.Join(xs, ","), nlink))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// makeContainer writes container name under n's containers: a config,
// an unprivileged root's owners, a big file, a hard link, a symlink, an
// xattr.
func makeContainer(t *testing.T, n Node, name string) string {
	dir := filepath.Join(n.lxcPath(), name)
	for rel, data := range map[string]string{
		"config":              "lxc.uts.name = " + name + "\nlxc.start.auto = 1\n",
		"rootfs/etc/hostname": name + "\n",
		"rootfs/var/counter":  "41\n",
		"rootfs/var/old":      "gone after the first pass\n",
		"rootfs/srv/big":      string(random(t, 8<<20)),
	} {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Link(filepath.Join(dir, "rootfs/srv/big"), filepath.Join(dir, "rootfs/srv/big.link")))
	must(os.Symlink("../etc/hostname", filepath.Join(dir, "rootfs/srv/name")))
	must(unix.Lsetxattr(filepath.Join(dir, "rootfs/etc/hostname"), "user.mkimage", []byte("kept"), 0))
	must(filepath.WalkDir(filepath.Join(dir, "rootfs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, 100000, 100000)
	}))
	must(os.Chmod(filepath.Join(dir, "rootfs/srv"), 0o750))
	return dir
}

// movePass pipes one pass from a to b, as the build host's SSH pipe
// would; cutAt > 0 closes the stream after that many bytes.
func movePass(t *testing.T, a, b Node, name string, p Pass, cutAt int64) (sent, got Moved, serr, rerr error) {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		var w io.Writer = pw
		if cutAt > 0 {
			w = &cutWriter{w: pw, left: cutAt}
		}
		sent, serr = a.SendMove(context.Background(), name, p, w, SendOptions{})
		pw.CloseWithError(serr)
	}()
	got, rerr = b.ReceiveMove(context.Background(), name, p, pr)
	pr.Close()
	<-done
	return
}

// cutWriter passes on left bytes, then fails as a dropped connection.
type cutWriter struct {
	w    io.Writer
	left int64
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > c.left {
		n, _ := c.w.Write(p[:c.left])
		c.left = 0
		return n, errors.New("connection dropped")
	}
	c.left -= int64(len(p))
	return c.w.Write(p)
}

// A container moves from a to b in two passes: the second carries only
// what changed after the first, and b's copy is a's, byte for byte, with
// owners, modes, hard links and xattrs. A dropped last pass leaves b
// without a container and without leftovers, and the retry succeeds; an
// aborted move puts the container back on a.
func TestMoveContainer(t *testing.T) {
	needMoveEnv(t)
	a, b := moveNode(t), moveNode(t)
	dir := makeContainer(t, a, "web")

	s1, r1, serr, rerr := movePass(t, a, b, "web", First, 0)
	if serr != nil || rerr != nil {
		t.Fatalf("first pass: send %v, receive %v", serr, rerr)
	}
	if s1.Bytes < 8<<20 || r1.Bytes != s1.Bytes {
		t.Errorf("first pass: sent %d bytes, received %d; want the whole container (over 8 MiB) both ways", s1.Bytes, r1.Bytes)
	}
	// The container goes on running: its files change. The counter
	// keeps its size and mtime (as a write within the clock's tick of
	// the copy would): rsync's quick check alone would miss it.
	counter := filepath.Join(dir, "rootfs/var/counter")
	fi, err := os.Stat(counter)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(counter, []byte("42\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(counter, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "rootfs/var/old"))
	os.WriteFile(filepath.Join(dir, "rootfs/var/new"), []byte("made after the first pass\n"), 0o600)
	want := treeOf(t, dir)

	// The last pass dropped half way: b has no container and nothing of
	// the cut stream; a's container is set aside, stopped.
	if _, _, serr, rerr := movePass(t, a, b, "web", Last, 300); serr == nil || rerr == nil {
		t.Fatalf("a cut last pass: send %v, receive %v; want both to fail", serr, rerr)
	}
	if _, err := os.Stat(filepath.Join(b.lxcPath(), "web")); !os.IsNotExist(err) {
		t.Errorf("after a cut last pass b has web: %v", err)
	}
	if _, err := os.Stat(b.snap("web", Last)); !os.IsNotExist(err) {
		t.Errorf("the cut last pass left %s: %v", b.snap("web", Last), err)
	}
	if _, err := os.Stat(filepath.Join(a.Root, MovedDir, "web/config")); err != nil {
		t.Errorf("a did not set web aside: %v", err)
	}

	// The retry goes on from there.
	s2, _, serr, rerr := movePass(t, a, b, "web", Last, 0)
	if serr != nil || rerr != nil {
		t.Fatalf("last pass: send %v, receive %v", serr, rerr)
	}
	if s2.Bytes*20 > s1.Bytes {
		t.Errorf("last pass: %d bytes, over 5%% of the first's %d", s2.Bytes, s1.Bytes)
	}
	t.Logf("first pass %d bytes in %v, last pass %d bytes in %v", s1.Bytes, s1.Took, s2.Bytes, s2.Took)
	if _, err := b.InstallMove(context.Background(), "web", nil); err != nil {
		t.Fatal(err)
	}
	if got := treeOf(t, filepath.Join(b.lxcPath(), "web")); got != want {
		t.Errorf("b's web differs from a's:\n%s\nwant\n%s", got, want)
	}
	if err := a.FinishMove("web"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []Node{a, b} {
		if ents, _ := os.ReadDir(n.moveDir()); len(ents) != 0 {
			t.Errorf("%s keeps %d entries after the move", n.moveDir(), len(ents))
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("a still has web where LXC finds it: %v", err)
	}
	// Receiving a container this node has is refused.
	if _, _, _, rerr := movePass(t, b, b, "web", First, 0); rerr == nil || !strings.Contains(rerr.Error(), "already exists") {
		t.Errorf("moving onto a node that has it: %v", rerr)
	}

	// And back to a, whose set-aside copy the one coming back replaces.
	for _, p := range []Pass{First, Last} {
		if _, _, serr, rerr := movePass(t, b, a, "web", p, 0); serr != nil || rerr != nil {
			t.Fatalf("back, pass %d: send %v, receive %v", p, serr, rerr)
		}
	}
	if _, err := a.InstallMove(context.Background(), "web", nil); err != nil {
		t.Fatal(err)
	}
	if got := treeOf(t, dir); got != want {
		t.Errorf("web back on a differs:\n%s\nwant\n%s", got, want)
	}
	if _, err := os.Stat(filepath.Join(a.Root, MovedDir, "web")); !os.IsNotExist(err) {
		t.Errorf("a keeps the copy web left behind: %v", err)
	}
}

// The child of TestMoveKilled: a move step killed at MKIMAGE_TEST_CUT.
func TestMoveKilledChild(t *testing.T) {
	step := os.Getenv("MKIMAGE_TEST_CUT")
	if step == "" || os.Getenv("MKIMAGE_TEST_MOVE") == "" {
		t.Skip("the child of TestMoveKilled")
	}
	n := Node{Root: os.Getenv("MKIMAGE_TEST_ROOT"), Log: t.Logf}
	cut = testenv.KillAt(step)
	switch step {
	case "set-aside":
		_, err := n.SendMove(context.Background(), "web", Last, io.Discard, SendOptions{})
		t.Fatal(err)
	case "installing":
		_, err := n.InstallMove(context.Background(), "web", nil)
		t.Fatal(err)
	}
}

// A kill at the set-aside (on the node the container leaves) or the
// install (on the node it goes to) leaves each node with a whole
// container or none, never a part; the move then goes on or aborts.
func TestMoveKilled(t *testing.T) {
	needMoveEnv(t)
	a, b := moveNode(t), moveNode(t)
	dir := makeContainer(t, a, "web")
	want := treeOf(t, dir)
	kill := func(n Node, step string) {
		t.Helper()
		testenv.RunKilled(t, "TestMoveKilledChild", "MKIMAGE_TEST_CUT="+step, "MKIMAGE_TEST_MOVE=1", "MKIMAGE_TEST_ROOT="+n.Root)
	}
	if _, _, serr, rerr := movePass(t, a, b, "web", First, 0); serr != nil || rerr != nil {
		t.Fatalf("first pass: %v, %v", serr, rerr)
	}
	kill(a, "set-aside")
	if got := treeOf(t, dir); got != want {
		t.Fatalf("killed before the set-aside, a's web changed")
	}
	// Aborted: a keeps web where it was.
	if err := a.AbortMove(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	if got := treeOf(t, dir); got != want {
		t.Fatalf("after the abort a's web differs")
	}
	if _, _, serr, rerr := movePass(t, a, b, "web", First, 0); serr != nil || rerr != nil {
		t.Fatalf("first pass again: %v, %v", serr, rerr)
	}
	if _, _, serr, rerr := movePass(t, a, b, "web", Last, 0); serr != nil || rerr != nil {
		t.Fatalf("last pass: %v, %v", serr, rerr)
	}
	kill(b, "installing")
	if _, err := os.Stat(filepath.Join(b.lxcPath(), "web")); !os.IsNotExist(err) {
		t.Fatalf("killed before the rename, b has web: %v", err)
	}
	if _, err := b.InstallMove(context.Background(), "web", nil); err != nil {
		t.Fatalf("install after the kill: %v", err)
	}
	if got := treeOf(t, filepath.Join(b.lxcPath(), "web")); got != want {
		t.Errorf("b's web differs from a's:\n%s\nwant\n%s", got, want)
	}

	// An abort on a after b installed it is the caller's mistake, but it
	// brings a's copy back whole, never a part.
	if err := a.AbortMove(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	if got := treeOf(t, dir); got != want {
		t.Errorf("a's web after the abort differs")
	}
	if !bytes.Equal([]byte(want), []byte(treeOf(t, filepath.Join(b.lxcPath(), "web")))) {
		t.Error("b's web changed")
	}
}
