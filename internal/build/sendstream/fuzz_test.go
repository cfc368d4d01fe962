package sendstream

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/fstree"
)

// smallTree is baseTree without its big files, xattrs and deep paths:
// every kind of entry, in a stream small enough to mutate.
func smallTree(t testing.TB) *fstree.Tree {
	tr := baseTree(t)
	for _, p := range []string{"sizes", "sparse", "deep", "names"} {
		remove(t, tr, p)
	}
	lookup(t, tr, "xattrs/file").Xattrs["user.big"] = []byte("big no more")
	put(t, tr, "sparse", sparseFile(100000, 1, fstree.Extent{Offset: 10, Length: 5000}, fstree.Extent{Offset: 60000, Length: 100}))
	return tr
}

// fuzzLimits keep the bytes Diff reads small (it reads holes too), and
// let the seeds through.
var fuzzLimits = Limits{MaxBytes: 1 << 20, MaxFileSize: 4 << 20, MaxInodes: 32}

// FuzzReadFull reads streams as the builder reads a stored version:
// whatever ReadFull accepts, WriteFull writes, ReadFull reads back the
// same, and writing that gives the same bytes again. The corpus holds a
// stream of the kernel's `btrfs send` (testdata/fuzz/FuzzReadFull).
func FuzzReadFull(f *testing.F) {
	seeds := [][]byte{full(f, fstree.New(epoch), baseOpts), full(f, smallTree(f), baseOpts), commandsStream(f)}
	for i, s := range append(seeds, corpusEntry(f, "kernel-full")) {
		if _, _, err := ReadFull(bytes.NewReader(s), fuzzLimits); err != nil {
			f.Fatalf("seed %d is refused, so mutations start from an error: %v", i, err)
		}
	}
	for _, s := range seeds {
		f.Add(s)
	}
	one := fstree.New(epoch)
	put(f, one, "f", file(0o644, []byte("new"), 1))
	f.Add(incremental(f, fstree.New(epoch), one, childOpts(1, changes[1])))
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, o, err := ReadFull(bytes.NewReader(b), fuzzLimits)
		if err != nil {
			return
		}
		var once bytes.Buffer
		if err := WriteFull(&once, tr, o); err != nil {
			t.Fatalf("WriteFull of what ReadFull read: %v", err)
		}
		back, o2, err := ReadFull(bytes.NewReader(once.Bytes()), Limits{})
		if err != nil {
			t.Fatalf("reading back what WriteFull wrote: %v", err)
		}
		if o2 != o {
			t.Fatalf("options %+v read back as %+v", o, o2)
		}
		if d, err := fstree.Diff(tr, back, fstree.DiffOptions{}); err != nil || len(d) > 0 {
			t.Fatalf("read, write, read differs: %v %q", err, d)
		}
		var twice bytes.Buffer
		if err := WriteFull(&twice, back, o2); err != nil || !bytes.Equal(once.Bytes(), twice.Bytes()) {
			t.Fatalf("writing the tree read back: %v, or other bytes", err)
		}
	})
}

// corpusEntry returns the bytes of a `go test fuzz v1` file holding one
// []byte.
func corpusEntry(t testing.TB, name string) []byte {
	t.Helper()
	text, err := os.ReadFile("testdata/fuzz/FuzzReadFull/" + name)
	if err != nil {
		t.Fatal(err)
	}
	lit, ok := strings.CutPrefix(strings.TrimSpace(string(text)), "go test fuzz v1\n[]byte(")
	s, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
	if !ok || err != nil {
		t.Fatalf("%s: not one []byte: %v", name, err)
	}
	return []byte(s)
}

// TestReadFullKernelStream reads the kernel's stream in the corpus
// (TestReadFullKernel's subvolume, sent by Linux 6.18) where no root or
// btrfs is at hand.
func TestReadFullKernelStream(t *testing.T) {
	tr, o := readFull(t, corpusEntry(t, "kernel-full"))
	if o.Name != "k" {
		t.Errorf("name %q", o.Name)
	}
	var names []string
	tr.Walk(func(p string, _ *fstree.Inode) error {
		names = append(names, p)
		return nil
	})
	if got := strings.Join(names, " "); got != " b b/a b/a/f data data.clone empty fifo hl null sparse sym" {
		t.Errorf("entries %q", got)
	}
	f, hl := lookup(t, tr, "b/a/f"), lookup(t, tr, "hl")
	if f != hl || f.Mode != fstree.ModeRegular|0o4755 || f.Uid != 5 || f.Gid != 6 || !bytes.Equal(f.Xattrs[capability], cap20) {
		t.Errorf("hl: %+v, want b/a/f's inode, setuid, 5:6, with its capability", hl)
	}
	data, _ := fstree.ReadAll(lookup(t, tr, "data").Content)
	clone, _ := fstree.ReadAll(lookup(t, tr, "data.clone").Content)
	if len(data) != 2100 || !bytes.Equal(data, clone) {
		t.Errorf("data.clone: %d bytes, data %d; equal %v", len(clone), len(data), bytes.Equal(data, clone))
	}
	if sp, ok := lookup(t, tr, "sparse").Content.(fstree.Sparse); !ok || sp.Size() != 3000000 || len(sp.Extents()) != 1 || sp.Extents()[0] != (fstree.Extent{Offset: 999424, Length: 4096}) {
		t.Errorf("sparse: %v", lookup(t, tr, "sparse").Content)
	}
	if n := lookup(t, tr, "null"); n.Mode != fstree.ModeChar|0o644 || n.Major != 1 || n.Minor != 3 {
		t.Errorf("null: %+v", n)
	}
	if n := lookup(t, tr, "empty"); !n.Mtime.Equal(time.Unix(-86400*365, 5)) {
		t.Errorf("empty: mtime %v", n.Mtime)
	}
	if n := lookup(t, tr, "b"); string(n.Xattrs["user.x"]) != "hello" || n.Mode != fstree.ModeDir|0o750 {
		t.Errorf("b: %+v", n)
	}
}
