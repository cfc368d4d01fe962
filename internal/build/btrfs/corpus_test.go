package btrfs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/fstree/fstreetest"
	"github.com/mkimage/mkimage/internal/testenv"
)

var epoch = time.Unix(1700000000, 123456789)

func mustPut(t testing.TB, tr *fstree.Tree, p string, n *fstree.Inode) {
	t.Helper()
	fstreetest.Put(t, tr, p, n, epoch)
}

func ts(i int) time.Time { return time.Unix(1600000000+int64(i)*7919, int64(i)*1000003%1e9) }

// corpus returns the test trees by name. big adds the slow ones.
func corpus(t testing.TB, big bool) map[string]*fstree.Tree {
	trees := map[string]*fstree.Tree{}
	trees["empty"] = fstree.New(epoch)

	kinds := fstree.New(epoch)
	f := fstree.NewFile(0o4755, []byte("setuid program\n"), ts(1))
	f.Uid, f.Gid = 1000, 2000
	f.Xattrs = map[string][]byte{"user.comment": []byte("hi there"), "security.capability": {1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}}
	mustPut(t, kinds, "bin/prog", f)
	mustPut(t, kinds, "bin/link", fstree.NewSymlink("prog", ts(2)))
	mustPut(t, kinds, "abs", fstree.NewSymlink("/usr/lib/x86_64-linux-gnu/libc.so.6", ts(3)))
	mustPut(t, kinds, "dev/null", &fstree.Inode{Mode: fstree.ModeChar | 0o666, Major: 1, Minor: 3, Atime: ts(4), Mtime: ts(5), Ctime: ts(6)})
	mustPut(t, kinds, "dev/sda1", &fstree.Inode{Mode: fstree.ModeBlock | 0o660, Gid: 6, Major: 8, Minor: 1, Atime: ts(4), Mtime: ts(5), Ctime: ts(6)})
	mustPut(t, kinds, "dev/big", &fstree.Inode{Mode: fstree.ModeChar | 0o600, Major: 4095, Minor: 1048575, Atime: ts(4), Mtime: ts(5), Ctime: ts(6)})
	mustPut(t, kinds, "run/fifo", &fstree.Inode{Mode: fstree.ModeFIFO | 0o644, Atime: ts(7), Mtime: ts(8), Ctime: ts(9)})
	mustPut(t, kinds, "run/sock", &fstree.Inode{Mode: fstree.ModeSocket | 0o755, Atime: ts(7), Mtime: ts(8), Ctime: ts(9)})
	mustPut(t, kinds, "empty", fstree.NewFile(0o600, nil, ts(10)))
	mustPut(t, kinds, "tmp", fstree.NewDir(0o1777, ts(11)))
	d := fstree.NewDir(0o2750, ts(12))
	d.Uid, d.Gid = 33, 33
	d.Xattrs = map[string][]byte{"user.dir": []byte("x"), "trusted.t": []byte("")}
	mustPut(t, kinds, "srv", d)
	mustPut(t, kinds, "srv/data", fstree.NewFile(0o640, make([]byte, 100000), ts(13)))
	mustPut(t, kinds, "old", fstree.NewFile(0o644, []byte("before 1970"), time.Unix(-86400*365, 5)))
	hl := fstree.NewFile(0o644, []byte("hard linked"), ts(14))
	mustPut(t, kinds, "hl1", hl)
	mustPut(t, kinds, "srv/hl2", hl)
	trees["kinds"] = kinds

	deep := fstree.New(epoch)
	p := ""
	for i := 0; i < 100; i++ {
		p = filepath.Join(p, fmt.Sprintf("d%02d", i))
		mustPut(t, deep, p, fstree.NewDir(0o755, ts(i)))
	}
	mustPut(t, deep, p+"/leaf", fstree.NewFile(0o644, []byte("bottom"), ts(1)))
	trees["deep"] = deep

	names := fstree.New(epoch)
	mustPut(t, names, strings.Repeat("n", 255), fstree.NewFile(0o644, []byte("long"), ts(1)))
	mustPut(t, names, strings.Repeat("é", 127), fstree.NewFile(0o644, []byte("unicode"), ts(2)))
	mustPut(t, names, "日本語のファイル名", fstree.NewFile(0o644, []byte("nihongo"), ts(3)))
	mustPut(t, names, "sp ace\ttab\nnl", fstree.NewFile(0o644, []byte("odd"), ts(4)))
	mustPut(t, names, strings.Repeat("d", 255)+"/"+strings.Repeat("x", 255), fstree.NewSymlink(strings.Repeat("t/", 2000), ts(5)))
	trees["names"] = names

	links := fstree.New(epoch)
	for k := 1; k <= 11; k++ {
		n := fstree.NewFile(0o644, []byte(fmt.Sprintf("file with %d links\n", k)), ts(k))
		for j := 0; j < k; j++ {
			mustPut(t, links, fmt.Sprintf("dir%d/f%d-%d", j%3, k, j), n)
		}
	}
	// Many long names of one inode in one directory overflow an
	// INODE_REF item into INODE_EXTREF items.
	many := fstree.NewFile(0o644, make([]byte, 5000), ts(20))
	for j := 0; j < 100; j++ {
		mustPut(t, links, fmt.Sprintf("crowd/%03d-%s", j, strings.Repeat("L", 200)), many)
	}
	trees["links"] = links

	inl := fstree.New(epoch)
	for _, n := range []int{1, 2047, 2048, 2049, 3949, 3950, 4094, 4095, 4096, 4097, 8191, 8192, 8193} {
		mustPut(t, inl, fmt.Sprintf("f%d", n), &fstree.Inode{Mode: fstree.ModeRegular | 0o644, Content: fstreetest.Random(uint64(n), int64(n)), Atime: ts(n), Mtime: ts(n), Ctime: ts(n)})
	}
	for n := 2047; n <= 4097; n += 7 {
		mustPut(t, inl, fmt.Sprintf("range/f%d", n), &fstree.Inode{Mode: fstree.ModeRegular | 0o644, Content: fstreetest.Random(uint64(n), int64(n)), Atime: ts(n), Mtime: ts(n), Ctime: ts(n)})
	}
	trees["inline"] = inl

	xat := fstree.New(epoch)
	for i := 0; i < 20; i++ {
		n := fstree.NewFile(0o644, []byte("x"), ts(i))
		n.Xattrs = map[string][]byte{}
		for j := 0; j <= i; j++ {
			n.Xattrs[fmt.Sprintf("user.attr%02d", j)] = []byte(strings.Repeat("v", j*50))
		}
		mustPut(t, xat, fmt.Sprintf("x%02d", i), n)
	}
	bigx := fstree.NewFile(0o644, nil, ts(1))
	bigx.Xattrs = map[string][]byte{"user.big": make([]byte, 16000)}
	mustPut(t, xat, "bigxattr", bigx)
	trees["xattrs"] = xat

	sp := fstree.New(epoch)
	mib := int64(1 << 20)
	mustPut(t, sp, "allhole", &fstree.Inode{Mode: fstree.ModeRegular | 0o644, Content: fstreetest.Sparse(10*mib, 0), Mtime: ts(1)})
	mustPut(t, sp, "smallhole", &fstree.Inode{Mode: fstree.ModeRegular | 0o644, Content: fstreetest.Sparse(3000, 0), Mtime: ts(1)})
	mustPut(t, sp, "middle", &fstree.Inode{Mode: fstree.ModeRegular | 0o644, Content: fstreetest.Sparse(20*mib, 0, []fstree.Extent{{Offset: 5 * mib, Length: 1 * mib}}...), Mtime: ts(2)})
	mustPut(t, sp, "unaligned", &fstree.Inode{Mode: fstree.ModeRegular | 0o644, Content: fstreetest.Sparse(1000001, 0, []fstree.Extent{{Offset: 10, Length: 5000}, {Offset: 6000, Length: 100}, {Offset: 300000, Length: 1}, {Offset: 999999, Length: 2}}...), Mtime: ts(3)})
	mustPut(t, sp, "tailhole", &fstree.Inode{Mode: fstree.ModeRegular | 0o644, Content: fstreetest.Sparse(5*mib, 0, []fstree.Extent{{Offset: 0, Length: 4096}}...), Mtime: ts(4)})
	mustPut(t, sp, "smalldata", &fstree.Inode{Mode: fstree.ModeRegular | 0o644, Content: fstreetest.Sparse(3000, 0, []fstree.Extent{{Offset: 1000, Length: 10}}...), Mtime: ts(5)})
	trees["sparse"] = sp

	many10k := fstree.New(epoch)
	for i := 0; i < 10000; i++ {
		mustPut(t, many10k, fmt.Sprintf("d%02d/file%05d", i%50, i), &fstree.Inode{Mode: fstree.ModeRegular | 0o644, Content: fstreetest.Random(uint64(i), int64(i%3000)), Atime: ts(i), Mtime: ts(i), Ctime: ts(i)})
	}
	trees["10k"] = many10k

	if big {
		lg := fstree.New(epoch)
		mustPut(t, lg, "big300", &fstree.Inode{Mode: fstree.ModeRegular | 0o644, Content: fstreetest.Random(1, 300*mib+12345), Mtime: ts(1)})
		mustPut(t, lg, "big130", &fstree.Inode{Mode: fstree.ModeRegular | 0o644, Content: fstreetest.Random(2, 130*mib), Mtime: ts(2)})
		mustPut(t, lg, "after", fstree.NewFile(0o644, []byte("after the big ones"), ts(3)))
		trees["large"] = lg
	}
	return trees
}

func TestCorpus(t *testing.T) {
	testenv.NeedTools(t, "btrfs")
	for name, tr := range corpus(t, !testing.Short()) {
		variants := []Options{{Label: "corpus"}}
		switch name {
		case "kinds", "large":
			variants = append(variants, Options{Metadata: Single})
		case "10k", "inline":
			// Small nodes: deeper trees (3 levels for 10k) and a lower
			// inline limit (3949 bytes).
			variants = append(variants, Options{NodeSize: 4096})
		}
		for _, o := range variants {
			t.Run(fmt.Sprintf("%s/%d/%d", name, o.Metadata, o.NodeSize), func(t *testing.T) {
				img, res := writeImage(t, tr, o)
				o.Label = ""
				min, err := MinSize(tr, o)
				if err != nil || min != res.Size {
					t.Errorf("MinSize = %d, %v; Write made %d bytes", min, err, res.Size)
				}
				btrfsCheck(t, img)
				if os.Geteuid() != 0 {
					return
				}
				mark := dmesgMark()
				dir := mount(t, img, false)
				compareTree(t, dir, tr, nil)
				umount(t, dir)
				if bad := kernelComplaints(mark); len(bad) > 0 {
					t.Errorf("kernel complained:\n%s", strings.Join(bad, "\n"))
				}
			})
		}
	}
}

func TestDeterministic(t *testing.T) {
	tr := corpus(t, false)["kinds"]
	a, _ := writeImage(t, tr, Options{})
	b, _ := writeImage(t, tr, Options{})
	if sha256File(t, a) != sha256File(t, b) {
		t.Fatal("two writes of the same tree differ")
	}
	c, _ := writeImage(t, tr, Options{Seed: []byte("other")})
	if sha256File(t, a) == sha256File(t, c) {
		t.Fatal("a different seed gave the same image")
	}
}

// recorder keeps the errors compareTree reports.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Errorf(format string, a ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, a...))
}

// TestCompareDetects makes sure the read-back comparison can fail: the
// mounted image is compared with trees that differ from it, and each
// change must be reported as what it is.
func TestCompareDetects(t *testing.T) {
	testenv.NeedRoot(t)
	tr := corpus(t, false)["kinds"]
	img, _ := writeImage(t, tr, Options{})
	dir := mount(t, img, false)
	for _, c := range []struct {
		name   string
		change func(tr *fstree.Tree)
		want   []string // in the reported errors
	}{
		{"mode", func(tr *fstree.Tree) { n, _ := tr.Lookup("bin/prog"); n.Mode ^= 0o1 }, []string{"/bin/prog: mode 4754 (a) != 4755 (b)"}},
		{"setuid", func(tr *fstree.Tree) { n, _ := tr.Lookup("bin/prog"); n.Mode &^= 0o4000 }, []string{"/bin/prog: mode 0755 (a) != 4755 (b)"}},
		{"owner", func(tr *fstree.Tree) { n, _ := tr.Lookup("bin/prog"); n.Gid++ }, []string{"/bin/prog: gid 2001 (a) != 2000 (b)"}},
		{"mtime", func(tr *fstree.Tree) { n, _ := tr.Lookup("bin/prog"); n.Mtime = n.Mtime.Add(1) }, []string{"/bin/prog: mtime"}},
		{"atime", func(tr *fstree.Tree) { n, _ := tr.Lookup("srv/data"); n.Atime = n.Atime.Add(1) }, []string{"/srv/data: atime"}},
		{"ctime", func(tr *fstree.Tree) { n, _ := tr.Lookup("dev/null"); n.Ctime = n.Ctime.Add(1) }, []string{"/dev/null: ctime"}},
		{"root", func(tr *fstree.Tree) { tr.Root.Mtime = tr.Root.Mtime.Add(1) }, []string{"/: mtime"}},
		{"content", func(tr *fstree.Tree) {
			n, _ := tr.Lookup("srv/data")
			b := make([]byte, 100000)
			b[99999] = 1
			n.Content = fstree.Bytes(b)
		}, []string{"/srv/data: content differs from byte 99999"}},
		{"size", func(tr *fstree.Tree) { n, _ := tr.Lookup("empty"); n.Content = fstree.Bytes("x") }, []string{"/empty: size 1 (a) != 0 (b)"}},
		{"xattr", func(tr *fstree.Tree) { n, _ := tr.Lookup("bin/prog"); n.Xattrs = nil }, []string{"/bin/prog: xattr user.comment only in b"}},
		{"rdev", func(tr *fstree.Tree) { n, _ := tr.Lookup("dev/null"); n.Minor = 5 }, []string{"/dev/null: device 1:5 (a) != 1:3 (b)"}},
		{"symlink", func(tr *fstree.Tree) { n, _ := tr.Lookup("bin/link"); n.Target = "prog2" }, []string{"/bin/link: symlink target"}},
		{"type", func(tr *fstree.Tree) { n, _ := tr.Lookup("run/fifo"); n.Mode = fstree.ModeSocket | 0o644 }, []string{"/run/fifo: type"}},
		{"extra", func(tr *fstree.Tree) { tr.Put("new", fstree.NewFile(0o644, nil, epoch)) }, []string{"/new: only in a"}},
		{"missing", func(tr *fstree.Tree) { delete(tr.Root.Children, "old") }, []string{"/old: only in b"}},
		{"link", func(tr *fstree.Tree) {
			n, _ := tr.Lookup("hl1")
			tr.Root.Children["hl3"] = n
		}, []string{"/hl3: only in a", "/hl1: hard links", "/hl1: 2 links, want 3", "/srv/hl2: 2 links, want 3"}},
		{"unlink", func(tr *fstree.Tree) {
			n, _ := tr.Lookup("hl1")
			c := *n
			tr.Root.Children["hl1"] = &c
		}, []string{"/hl1: hard links", "/hl1: 2 links, want 1", "/srv/hl2: 2 links, want 1"}},
	} {
		other := corpus(t, false)["kinds"]
		c.change(other)
		r := &recorder{TB: t}
		compareTree(r, dir, other, nil)
		all := strings.Join(r.errs, "\n")
		for _, w := range c.want {
			if !strings.Contains(all, w) {
				t.Errorf("%s: the comparison did not report %q; it said:\n%s", c.name, w, all)
			}
		}
	}
	r := &recorder{TB: t}
	compareTree(r, dir, tr, nil)
	if len(r.errs) != 0 {
		t.Errorf("the tree itself compared unequal:\n%s", strings.Join(r.errs, "\n"))
	}
	// A skipped path is left out on both sides, with what is below it.
	other := corpus(t, false)["kinds"]
	n, _ := other.Lookup("srv/data")
	n.Mtime = n.Mtime.Add(1)
	r = &recorder{TB: t}
	compareTree(r, dir, other, map[string]bool{"srv": true})
	if len(r.errs) != 0 {
		t.Errorf("a change below a skipped path was reported:\n%s", strings.Join(r.errs, "\n"))
	}
	// A skipped path the image lacks is still reported.
	other = corpus(t, false)["kinds"]
	mustPut(t, other, "mnt", fstree.NewDir(0o755, epoch))
	r = &recorder{TB: t}
	compareTree(r, dir, other, map[string]bool{"mnt": true})
	if !strings.Contains(strings.Join(r.errs, "\n"), "/mnt: only in a") {
		t.Errorf("a skipped path missing from the image was not reported: %q", r.errs)
	}
}

// TestMapped: every non-zero byte of the image lies in Result.Mapped, so
// a block map built from it copies the whole filesystem.
func TestMapped(t *testing.T) {
	for _, name := range []string{"kinds", "sparse", "10k"} {
		img, res := writeImage(t, corpus(t, false)[name], Options{MaxInline: 2048})
		data, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		in := func(off int64) bool {
			for _, e := range res.Mapped {
				if off >= e.Offset && off < e.Offset+e.Length {
					return true
				}
			}
			return false
		}
		var mapped int64
		for _, e := range res.Mapped {
			mapped += e.Length
		}
		for off := int64(0); off < int64(len(data)); off += 4096 {
			blk := data[off : off+4096]
			if !in(off) && !bytes.Equal(blk, make([]byte, 4096)) {
				t.Fatalf("%s: non-zero block at %d outside Mapped %v", name, off, res.Mapped)
			}
		}
		if mapped == 0 || mapped > res.Size {
			t.Errorf("%s: %d bytes mapped of %d", name, mapped, res.Size)
		}
		btrfsCheck(t, img)
	}
}

// TestManyDataChunks cuts data chunks at 8 MiB so that extents split at
// chunk ends and the 64 MiB mirror falls at different places.
func TestManyDataChunks(t *testing.T) {
	defer func(old uint64) { maxDataChunk = old }(maxDataChunk)
	tr := corpus(t, false)["kinds"]
	for i := 0; i < 2000; i++ {
		mustPut(t, tr, fmt.Sprintf("many/f%d", i), &fstree.Inode{Mode: fstree.ModeRegular | 0o644, Content: fstreetest.Random(uint64(i), int64(i*37)), Mtime: ts(i)})
	}
	mustPut(t, tr, "big/a", &fstree.Inode{Mode: fstree.ModeRegular | 0o644, Content: fstreetest.Random(5, 50<<20+3), Mtime: ts(1)})
	mustPut(t, tr, "big/b", &fstree.Inode{Mode: fstree.ModeRegular | 0o644, Content: fstreetest.Random(6, 7<<20), Mtime: ts(2)})
	for _, size := range []uint64{8 << 20, 9 << 20} {
		maxDataChunk = size
		img, _ := writeImage(t, tr, Options{Metadata: Single})
		btrfsCheck(t, img)
		if os.Geteuid() == 0 {
			dir := mount(t, img, false)
			compareTree(t, dir, tr, nil)
			umount(t, dir)
		}
		out := testenv.Run(t, "btrfs", "inspect-internal", "dump-tree", "-t", "chunk", img)
		if n := strings.Count(out, "type DATA"); n < 5 {
			t.Errorf("%d data chunks, want several", n)
		}
	}
}
