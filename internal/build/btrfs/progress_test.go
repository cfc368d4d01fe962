package btrfs

import (
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/fstree/fstreetest"
)

// tally is an io.WriterAt that keeps only how many bytes it was given.
type tally struct{ n int64 }

func (w *tally) WriteAt(p []byte, off int64) (int, error) { w.n += int64(len(p)); return len(p), nil }

// TestProgress: Options.Progress learns the total before the first
// byte, counts every byte written, and ends at the total.
func TestProgress(t *testing.T) {
	ts := time.Unix(1700000000, 0)
	file := func(c fstree.Content) *fstree.Inode {
		return &fstree.Inode{Mode: fstree.ModeRegular | 0o644, Content: c, Atime: ts, Mtime: ts, Ctime: ts}
	}
	for _, tc := range []struct {
		name  string
		files map[string]fstree.Content
		o     Options
	}{
		{"empty", nil, Options{}},
		{"inline only", map[string]fstree.Content{"a": fstree.Bytes("hello\n")}, Options{}},
		{"data, DUP metadata", map[string]fstree.Content{"big": fstreetest.Random(1, 20<<20), "small": fstreetest.Random(2, 5000)}, Options{}},
		{"data, single metadata", map[string]fstree.Content{"big": fstreetest.Random(1, 3<<20)}, Options{Metadata: Single}},
		{"sparse", map[string]fstree.Content{"s": fstreetest.Sparse(8<<20, 3, fstree.Extent{Offset: 1 << 20, Length: 64 << 10})}, Options{}},
		{"mirror superblock", map[string]fstree.Content{"a": fstreetest.Random(4, 1<<20)}, Options{Size: 256 << 20}},
		{"subvolumes", map[string]fstree.Content{"x": fstreetest.Random(5, 100000)}, Options{RootSubvolume: "@", Subvolumes: []string{"var/lib/lxc", ".snapshots"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := fstree.New(ts)
			for name, c := range tc.files {
				if err := tr.Put(name, file(c)); err != nil {
					t.Fatal(err)
				}
			}
			type call struct{ done, total int64 }
			var calls []call
			o := tc.o
			o.Progress = func(done, total int64) { calls = append(calls, call{done, total}) }
			w := &tally{}
			if _, err := Write(w, tr, o); err != nil {
				t.Fatal(err)
			}
			if len(calls) < 2 {
				t.Fatalf("%d calls", len(calls))
			}
			first, last := calls[0], calls[len(calls)-1]
			if first.done != 0 {
				t.Errorf("first call done %d, want 0", first.done)
			}
			if last.done != last.total || last.done != w.n {
				t.Errorf("last call %+v; %d bytes written", last, w.n)
			}
			for i, c := range calls[1:] {
				if c.total != first.total || c.done < calls[i].done {
					t.Errorf("call %d %+v after %+v", i+1, c, calls[i])
				}
			}
			t.Logf("%d calls, %d bytes", len(calls), w.n)
		})
	}
}
