package fat

import (
	"testing"

	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/fstree/fstreetest"
)

// TestProgress: Options.Progress learns the total before the first
// byte and ends at it, which is every byte of the ranges Write returns.
func TestProgress(t *testing.T) {
	streamed := fstree.New(t0)
	for _, f := range []struct {
		name string
		n    int64
	}{{"Image", 5<<20 + 3}, {"initrd.img", 3 << 20}, {"tiny", 1}} {
		in := &fstree.Inode{Mode: fstree.ModeRegular | 0o644, Content: fstreetest.Random(uint64(f.n), f.n), Mtime: t0}
		if err := streamed.Put(f.name, in); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		tr   *fstree.Tree
	}{
		{"empty", fstree.New(t0)},
		{"sample (bytes in memory)", sampleTree(t, 4096)},
		{"streamed content", streamed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type call struct{ done, total int64 }
			var calls []call
			w := &recordWriter{}
			rs, err := Write(w, tc.tr, Options{Size: 64 << 20, Progress: func(done, total int64) { calls = append(calls, call{done, total}) }})
			if err != nil {
				t.Fatal(err)
			}
			var ranges int64
			for _, r := range rs {
				ranges += r.Length
			}
			if len(calls) < 2 {
				t.Fatalf("%d calls", len(calls))
			}
			first, last := calls[0], calls[len(calls)-1]
			if first.done != 0 || last.done != last.total || last.total != ranges {
				t.Errorf("first call %+v, last %+v; ranges hold %d bytes", first, last, ranges)
			}
			for i, c := range calls[1:] {
				if c.total != first.total || c.done < calls[i].done {
					t.Errorf("call %d %+v after %+v", i+1, c, calls[i])
				}
			}
		})
	}
}
