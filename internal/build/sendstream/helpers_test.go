package sendstream

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/fstree/fstreetest"
)

var epoch = time.Unix(1700000000, 123456789)

func ts(i int) time.Time { return time.Unix(1600000000+int64(i)*7919, int64(i)*1000003%1e9) }

func file(perm uint32, b []byte, i int) *fstree.Inode { return fstree.NewFile(perm, b, ts(i)) }

func sparseFile(size int64, i int, ext ...fstree.Extent) *fstree.Inode {
	return &fstree.Inode{Mode: fstree.ModeRegular | 0o644, Content: fstreetest.Sparse(size, uint64(i), ext...), Atime: ts(i), Mtime: ts(i), Ctime: ts(i)}
}

func put(t testing.TB, tr *fstree.Tree, p string, n *fstree.Inode) {
	t.Helper()
	fstreetest.Put(t, tr, p, n, epoch)
}

func remove(t testing.TB, tr *fstree.Tree, p string) {
	t.Helper()
	parent, ok := tr.Lookup(path.Dir(p))
	if _, there := parent.Children[path.Base(p)]; !ok || !there {
		t.Fatalf("remove %s: not in the tree", p)
	}
	delete(parent.Children, path.Base(p))
}

func lookup(t testing.TB, tr *fstree.Tree, p string) *fstree.Inode {
	t.Helper()
	n, ok := tr.Lookup(p)
	if !ok {
		t.Fatalf("%s: not in the tree", p)
	}
	return n
}

// baseTree has every kind of entry the writer handles.
func baseTree(t testing.TB) *fstree.Tree {
	tr := fstree.New(epoch)
	f := file(0o4755, []byte("setuid program\n"), 1)
	f.Uid, f.Gid = 1000, 2000
	f.Xattrs = map[string][]byte{"user.comment": []byte("hi there"), capability: {1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}}
	put(t, tr, "bin/prog", f)
	capOnly := file(0o755, []byte("ping\n"), 2)
	capOnly.Xattrs = map[string][]byte{capability: {1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}}
	put(t, tr, "bin/ping", capOnly)
	put(t, tr, "bin/link", fstree.NewSymlink("prog", ts(2)))
	put(t, tr, "abs", fstree.NewSymlink("/usr/lib/x86_64-linux-gnu/libc.so.6", ts(3)))
	put(t, tr, "dev/null", &fstree.Inode{Mode: fstree.ModeChar | 0o666, Major: 1, Minor: 3, Atime: ts(4), Mtime: ts(5), Ctime: ts(6)})
	put(t, tr, "dev/sda1", &fstree.Inode{Mode: fstree.ModeBlock | 0o660, Gid: 6, Major: 8, Minor: 1, Atime: ts(4), Mtime: ts(5), Ctime: ts(6)})
	put(t, tr, "dev/big", &fstree.Inode{Mode: fstree.ModeChar | 0o600, Major: 4095, Minor: 1048575, Atime: ts(4), Mtime: ts(5), Ctime: ts(6)})
	put(t, tr, "run/fifo", &fstree.Inode{Mode: fstree.ModeFIFO | 0o644, Atime: ts(7), Mtime: ts(8), Ctime: ts(9)})
	put(t, tr, "run/sock", &fstree.Inode{Mode: fstree.ModeSocket | 0o755, Atime: ts(7), Mtime: ts(8), Ctime: ts(9)})
	put(t, tr, "tmp", fstree.NewDir(0o1777, ts(11)))
	d := fstree.NewDir(0o2750, ts(12))
	d.Uid, d.Gid = 33, 33
	d.Xattrs = map[string][]byte{"user.dir": []byte("x"), "trusted.t": []byte("")}
	put(t, tr, "srv", d)
	put(t, tr, "old", file(0o644, []byte("before 1970"), 0))
	lookup(t, tr, "old").Mtime = time.Unix(-86400*365, 5)
	hl := file(0o644, []byte("hard linked"), 14)
	put(t, tr, "hl1", hl)
	put(t, tr, "srv/hl2", hl)
	three := file(0o600, []byte("three names"), 15)
	for _, p := range []string{"links/a", "links/b", "srv/c"} {
		put(t, tr, p, three)
	}

	// Names and paths.
	put(t, tr, "names/"+strings.Repeat("n", 255), file(0o644, []byte("long"), 16))
	put(t, tr, "names/"+strings.Repeat("é", 127), file(0o644, []byte("unicode"), 17))
	put(t, tr, "names/sp ace\ttab\nnl", file(0o644, []byte("odd"), 18))
	put(t, tr, "names/ lead and trail ", file(0o644, []byte("spaces"), 19))
	put(t, tr, "names/"+strings.Repeat("d", 255)+"/"+strings.Repeat("x", 255), fstree.NewSymlink(strings.Repeat("t/", 2000), ts(20)))
	deep := "deep"
	for i := 0; i < 100; i++ {
		deep += fmt.Sprintf("/d%02d", i)
		put(t, tr, deep, fstree.NewDir(0o755, ts(i)))
	}
	put(t, tr, deep+"/leaf", file(0o644, []byte("bottom"), 21))

	// Sizes around the write chunk, and holes.
	for _, n := range []int{0, 1, WriteChunk - 1, WriteChunk, WriteChunk + 1, 2 * WriteChunk, 1<<20 + 3} {
		put(t, tr, fmt.Sprintf("sizes/f%d", n), file(0o644, fstreetest.Data(uint64(n), n), n%50))
	}
	mib := int64(1 << 20)
	put(t, tr, "sparse/allhole", sparseFile(10*mib, 1))
	put(t, tr, "sparse/middle", sparseFile(20*mib, 2, fstree.Extent{Offset: 5 * mib, Length: mib}))
	put(t, tr, "sparse/unaligned", sparseFile(1000001, 3, fstree.Extent{Offset: 10, Length: 5000}, fstree.Extent{Offset: 6000, Length: 100}, fstree.Extent{Offset: 300000, Length: 1}, fstree.Extent{Offset: 999999, Length: 2}))
	put(t, tr, "sparse/tailhole", sparseFile(5*mib, 4, fstree.Extent{Offset: 0, Length: 4096}))

	// Xattrs of many sizes.
	x := file(0o644, []byte("x"), 22)
	x.Xattrs = map[string][]byte{"user.empty": {}, "user.small": []byte("v"), "user.big": fstreetest.Data(7, 16000), "trusted.bin": {0, 1, 2, 0}}
	put(t, tr, "xattrs/file", x)
	return tr
}

// op is one decoded command.
type op struct {
	cmd   string
	path  string
	attrs map[uint16][]byte
}

func (o op) String() string { return o.cmd + " " + o.path }

// decode parses a stream we wrote, checking the framing and every crc.
func decode(t testing.TB, b []byte) []op {
	t.Helper()
	if len(b) < 17 || string(b[:13]) != magic || binary.LittleEndian.Uint32(b[13:]) != 1 {
		t.Fatalf("bad stream header % x", b[:min(len(b), 17)])
	}
	b = b[17:]
	var ops []op
	for len(b) > 0 {
		if len(b) < cmdHeader {
			t.Fatalf("truncated command header after %v", ops)
		}
		n := int(binary.LittleEndian.Uint32(b))
		if len(b) < cmdHeader+n || cmdHeader+n > maxCommand {
			t.Fatalf("command of %d bytes after %v", n, ops)
		}
		c := bytes.Clone(b[:cmdHeader+n])
		want := binary.LittleEndian.Uint32(c[6:])
		binary.LittleEndian.PutUint32(c[6:], 0)
		if got := crc(c); got != want {
			t.Fatalf("crc %#x, header says %#x", got, want)
		}
		o := op{cmd: cmdNames[binary.LittleEndian.Uint16(c[4:])], attrs: map[uint16][]byte{}}
		for a := c[cmdHeader:]; len(a) > 0; {
			typ, l := binary.LittleEndian.Uint16(a), int(binary.LittleEndian.Uint16(a[2:]))
			o.attrs[typ] = a[4 : 4+l]
			a = a[4+l:]
		}
		o.path = string(o.attrs[attrPath])
		ops = append(ops, o)
		b = b[cmdHeader+n:]
	}
	if len(ops) == 0 || ops[len(ops)-1].cmd != "end" {
		t.Fatalf("stream does not close with end: %v", ops)
	}
	return ops
}

func u64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }
