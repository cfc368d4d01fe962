package sendstream

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/mkimage/mkimage/internal/build/rootfs"
	"github.com/mkimage/mkimage/internal/build/sendstream/sendstreamtest"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/testenv"
)

// checkDump has btrfs-progs parse the stream and list the same commands
// we wrote.
func checkDump(t testing.TB, stream []byte) {
	t.Helper()
	got := sendstreamtest.Dump(t, stream)
	var want []string
	for _, o := range decode(t, stream) {
		if o.cmd != "end" {
			want = append(want, o.cmd)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("btrfs receive --dump lists %d commands %v, we wrote %d: %v", len(got), got, len(want), want)
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

// receive applies stream with btrfs receive under mnt and checks the
// subvolume it makes against want.
func receive(t testing.TB, mnt string, stream []byte, o Options, want *fstree.Tree) {
	t.Helper()
	sendstreamtest.Receive(t, mnt, stream, o.Name, o.UUID, want)
}

// TestReceive has btrfs receive apply the base tree's full stream, then
// every change's incremental stream on top of it, and reads each
// received subvolume back.
func TestReceive(t *testing.T) {
	mnt := testenv.ScratchBtrfs(t)
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
	mnt := testenv.ScratchBtrfs(t)
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
