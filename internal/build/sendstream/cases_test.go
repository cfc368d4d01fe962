package sendstream

import (
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/fstree/fstreetest"
)

// change is one way a child version differs from baseTree.
type change struct {
	name string
	do   func(t testing.TB, tr *fstree.Tree)
	// want, if set, is the exact incremental stream (commands and
	// paths) between snapshot and end.
	want []string
}

var changes = []change{
	{name: "unchanged", do: func(testing.TB, *fstree.Tree) {}, want: []string{}},
	{name: "one file", do: func(t testing.TB, tr *fstree.Tree) {
		n := lookup(t, tr, "sizes/f98304")
		b := fstreetest.Data(98304, 98304)
		b[WriteChunk+5] ^= 1
		n.Content = fstree.Bytes(b)
		n.Mtime = ts(99)
	}, want: []string{"write sizes/f98304", "utimes sizes/f98304"}},
	{name: "grow and shrink", do: func(t testing.TB, tr *fstree.Tree) {
		lookup(t, tr, "sizes/f49152").Content = fstree.Bytes(fstreetest.Data(49152, 49153))
		lookup(t, tr, "sizes/f1").Content = fstree.Bytes(fstreetest.Data(5, WriteChunk*3))
		lookup(t, tr, "sizes/f49153").Content = fstree.Bytes(nil)
		lookup(t, tr, "sizes/f98304").Content = fstree.Bytes(fstreetest.Data(98304, 98304)[:70000])
		// Growth by zeros only: a truncate alone.
		lookup(t, tr, "sizes/f49151").Content = fstree.Bytes(append(fstreetest.Data(49151, 49151), make([]byte, 100000)...))
	}},
	{name: "metadata", do: func(t testing.TB, tr *fstree.Tree) {
		n := lookup(t, tr, "xattrs/file")
		n.Mode = fstree.ModeRegular | 0o600
		n.Uid, n.Gid = 5, 6
		delete(n.Xattrs, "user.small")
		n.Xattrs["user.big"] = []byte("now small")
		n.Xattrs["user.new"] = []byte("new")
		d := lookup(t, tr, "srv")
		d.Mode = fstree.ModeDir | 0o755
		d.Xattrs = nil
		tr.Root.Mode = fstree.ModeDir | 0o700
		tr.Root.Atime = ts(77)
		lookup(t, tr, "old").Atime = ts(78)
		lookup(t, tr, "bin/link").Uid = 9
		lookup(t, tr, "run/fifo").Mode = fstree.ModeFIFO | 0o600
	}},
	{name: "file to dir and back", do: func(t testing.TB, tr *fstree.Tree) {
		remove(t, tr, "old")
		put(t, tr, "old/inside", file(0o644, []byte("was a file"), 30))
		remove(t, tr, "sparse")
		put(t, tr, "sparse", file(0o644, []byte("was a directory"), 31))
		remove(t, tr, "bin/link")
		put(t, tr, "bin/link", fstree.NewDir(0o755, ts(32)))
	}},
	{name: "removed and added", do: func(t testing.TB, tr *fstree.Tree) {
		remove(t, tr, "deep")
		remove(t, tr, "names")
		put(t, tr, "new/dir/f", file(0o640, fstreetest.Data(1, 70000), 40))
		put(t, tr, "new/dev/zero", &fstree.Inode{Mode: fstree.ModeChar | 0o666, Major: 1, Minor: 5, Mtime: ts(41)})
		put(t, tr, "new/empty", file(0o644, nil, 42))
		put(t, tr, "new/s", fstree.NewSymlink("dir/f", ts(43)))
		put(t, tr, "new/name\nwith newline", file(0o644, []byte("nl"), 44))
	}},
	{name: "hard links", do: func(t testing.TB, tr *fstree.Tree) {
		put(t, tr, "xattrs/second", lookup(t, tr, "xattrs/file")) // a single file gains a name
		remove(t, tr, "links/b")                                  // a group loses one
		g := file(0o644, []byte("new group"), 50)
		put(t, tr, "links/z1", g)
		put(t, tr, "srv/z2", g)
		n := lookup(t, tr, "hl1") // content change of a group that stays
		n.Content = fstree.Bytes("hard linked, changed")
		n.Mtime = ts(51)
	}},
	{name: "type and target", do: func(t testing.TB, tr *fstree.Tree) {
		lookup(t, tr, "abs").Target = "/elsewhere"
		lookup(t, tr, "dev/sda1").Minor = 2
		remove(t, tr, "run/fifo")
		put(t, tr, "run/fifo", &fstree.Inode{Mode: fstree.ModeSocket | 0o644, Mtime: ts(60)})
	}, want: []string{
		"symlink o400-0-0", "chown o400-0-0", "utimes o400-0-0", "rename o400-0-0",
		"mknod dev/o401-0-0", "chown dev/o401-0-0", "chmod dev/o401-0-0", "utimes dev/o401-0-0", "rename dev/o401-0-0", "utimes dev",
		"mksock run/o402-0-0", "chown run/o402-0-0", "chmod run/o402-0-0", "utimes run/o402-0-0", "rename run/o402-0-0", "utimes run",
		"utimes ",
	}},
	{name: "capabilities", do: func(t testing.TB, tr *fstree.Tree) {
		p := lookup(t, tr, "bin/prog") // rewritten: setuid and capability must survive
		p.Content = fstree.Bytes("setuid program, v2\n")
		p.Mtime = ts(70)
		q := lookup(t, tr, "bin/ping") // rewritten and capability dropped
		q.Content = fstree.Bytes("ping v2\n")
		delete(q.Xattrs, capability)
		h := lookup(t, tr, "hl1") // gains one
		h.Xattrs = map[string][]byte{capability: {1, 0, 0, 2, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}}
		o := lookup(t, tr, "srv/c") // owner change of a setuid file
		o.Mode = fstree.ModeRegular | 0o4750
		o.Uid = 1
	}},
	{name: "sparse", do: func(t testing.TB, tr *fstree.Tree) {
		mib := int64(1 << 20)
		lookup(t, tr, "sparse/allhole").Content = sparseFile(10*mib, 9, fstree.Extent{Offset: 3 * mib, Length: 10}).Content
		lookup(t, tr, "sparse/middle").Content = sparseFile(20*mib, 2).Content // data became a hole
		lookup(t, tr, "sparse/tailhole").Content = sparseFile(30*mib, 4, fstree.Extent{Offset: 0, Length: 4096}).Content
	}},
	{name: "all new", do: func(t testing.TB, tr *fstree.Tree) {
		tr.Root = fstree.NewDir(0o755, ts(90))
		put(t, tr, "only", file(0o644, []byte("everything else went"), 91))
	}},
}

// child returns baseTree changed by c.
func (c change) child(t testing.TB) *fstree.Tree {
	tr := baseTree(t).Clone()
	c.do(t, tr)
	if err := tr.Validate(); err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	return tr
}

func subvolName(s string) string { return strings.ReplaceAll(s, " ", "-") }

var baseOpts = Options{Name: "base", UUID: [16]byte{0xba, 0x5e, 1}, CTransid: 7}

func childOpts(i int, c change) Options {
	return Options{Name: subvolName(c.name), UUID: [16]byte{0xc0, byte(i)}, CTransid: 8, ParentUUID: baseOpts.UUID, ParentCTransid: baseOpts.CTransid}
}
