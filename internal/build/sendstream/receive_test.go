package sendstream

import (
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/build/rootfs"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/fstree/fstreetest"
	"github.com/mkimage/mkimage/internal/testenv"
)

func writeStream(t testing.TB, b []byte) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "stream")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// checkDump has btrfs-progs parse the stream (`btrfs receive --dump`,
// which verifies every crc) and list the same commands we wrote.
func checkDump(t testing.TB, stream []byte) {
	t.Helper()
	testenv.NeedTools(t, "btrfs")
	out := testenv.Run(t, "btrfs", "receive", "--dump", "-f", writeStream(t, stream))
	// A command's line starts with its name and a path under "./";
	// other lines are the rest of printed xattr values.
	known := map[string]bool{}
	for _, name := range cmdNames {
		known[name] = true
	}
	var got []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 1 && known[f[0]] && strings.HasPrefix(f[1], "./") {
			got = append(got, f[0])
		}
	}
	var want []string
	for _, o := range decode(t, stream) {
		if o.cmd != "end" {
			want = append(want, o.cmd)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("btrfs receive --dump lists %d commands, we wrote %d:\n%s", len(got), len(want), out)
	}
}

func TestDump(t *testing.T) {
	checkDump(t, full(t, baseTree(t), baseOpts))
	for i, c := range changes {
		t.Run(c.name, func(t *testing.T) {
			checkDump(t, incremental(t, baseTree(t), c.child(t), childOpts(i, c)))
		})
	}
}

// scratchFS makes an empty btrfs filesystem with mkfs.btrfs, loop-mounts
// it (noatime: reading it back must not move times) and unmounts it at
// cleanup.
func scratchFS(t testing.TB) string {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "mkfs.btrfs", "btrfs", "mount", "umount", "losetup")
	dir := t.TempDir()
	img := filepath.Join(dir, "fs.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 1<<30); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, "mkfs.btrfs", "-q", img)
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, "mount", "-t", "btrfs", "-o", "loop,noatime", img, mnt)
	t.Cleanup(func() {
		dev, _ := exec.Command("findmnt", "-n", "-o", "SOURCE", "--mountpoint", mnt).Output()
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
		if d := strings.TrimSpace(string(dev)); strings.HasPrefix(d, "/dev/loop") {
			exec.Command("losetup", "-d", d).Run()
		}
	})
	return mnt
}

// receive applies stream with btrfs receive under mnt and checks the new
// subvolume: read-only, received UUID as sent, and the same tree as want
// (ctime aside: receive cannot set it).
func receive(t testing.TB, mnt string, stream []byte, o Options, want *fstree.Tree) {
	t.Helper()
	testenv.Run(t, "btrfs", "receive", "-f", writeStream(t, stream), mnt)
	sub := filepath.Join(mnt, o.Name)
	if out := testenv.Run(t, "btrfs", "property", "get", "-ts", sub, "ro"); strings.TrimSpace(out) != "ro=true" {
		t.Errorf("%s: %s", sub, out)
	}
	u := hex.EncodeToString(o.UUID[:])
	u = u[:8] + "-" + u[8:12] + "-" + u[12:16] + "-" + u[16:20] + "-" + u[20:]
	if out := testenv.Run(t, "btrfs", "subvolume", "show", sub); !strings.Contains(out, "Received UUID: \t\t"+u) {
		t.Errorf("%s: received UUID is not %s:\n%s", sub, u, out)
	}
	got, err := rootfs.HostDir(sub, rootfs.HostOptions{})
	if err != nil {
		t.Fatalf("reading back %s: %v", sub, err)
	}
	sameTree(t, fstreetest.EpochTimes(want), got, fstree.DiffOptions{IgnoreCtime: true}, o.Name+": what btrfs receive made")
}

// sameTree fails t with the differences between want and got (what
// names), at most 20 of them.
func sameTree(t testing.TB, want, got *fstree.Tree, opt fstree.DiffOptions, what string) {
	t.Helper()
	diffs, err := fstree.Diff(want, got, opt)
	if err != nil {
		diffs = append(diffs, err.Error())
	}
	for i, d := range diffs {
		if i < 20 {
			t.Errorf("%s", d)
		}
	}
	if len(diffs) > 0 {
		t.Errorf("%d differences between the tree (a) and %s (b)", len(diffs), what)
	}
}

// TestReceive has btrfs receive apply the base tree's full stream, then
// every change's incremental stream on top of it, and reads each
// received subvolume back.
func TestReceive(t *testing.T) {
	mnt := scratchFS(t)
	base := baseTree(t)
	receive(t, mnt, full(t, base, baseOpts), baseOpts, base)
	if t.Failed() {
		t.FailNow()
	}
	// The read-back must see a change, or the checks below prove nothing.
	got, err := rootfs.HostDir(filepath.Join(mnt, baseOpts.Name), rootfs.HostOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := fstree.Diff(changes[1].child(t), got, fstree.DiffOptions{IgnoreCtime: true}); len(d) != 2 {
		t.Errorf("read-back of base against the one-file change: %d differences, want content and mtime: %q", len(d), d)
	}
	for i, c := range changes {
		t.Run(c.name, func(t *testing.T) {
			child := c.child(t)
			receive(t, mnt, incremental(t, base, child, childOpts(i, c)), childOpts(i, c), child)
		})
	}
}

// TestReceiveChain: each version is the parent of the next, as on a node
// that takes every update.
func TestReceiveChain(t *testing.T) {
	mnt := scratchFS(t)
	parent, po := baseTree(t), baseOpts
	receive(t, mnt, full(t, parent, po), po, parent)
	order := []string{"one file", "grow and shrink", "metadata", "hard links", "type and target", "capabilities", "sparse", "file to dir and back", "all new"}
	for i, name := range order {
		c := changes[slices.IndexFunc(changes, func(c change) bool { return c.name == name })]
		child := parent.Clone()
		c.do(t, child)
		o := Options{Name: "v" + string(rune('1'+i)), UUID: [16]byte{0xee, byte(i)}, CTransid: uint64(10 + i), ParentUUID: po.UUID, ParentCTransid: po.CTransid}
		stream := incremental(t, parent, child, o)
		checkDump(t, stream)
		receive(t, mnt, stream, o, child)
		parent, po = child, o
	}
}
