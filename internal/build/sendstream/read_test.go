package sendstream

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/fstree/fstreetest"
)

// readFull reads stream with the default limits and fails t on an error.
func readFull(t testing.TB, stream []byte) (*fstree.Tree, Options) {
	t.Helper()
	tr, o, err := ReadFull(bytes.NewReader(stream), Limits{})
	if err != nil {
		t.Fatalf("ReadFull: %v", err)
	}
	return tr, o
}

// sameTree fails t with the differences between want and got, at most
// 20 of them.
func sameTree(t testing.TB, want, got *fstree.Tree, opt fstree.DiffOptions) {
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
		t.Errorf("%d differences between the tree (a) and what ReadFull read (b)", len(diffs))
	}
}

// roundTrips are the trees the writer's tests build, and a few more
// contents: each is written, read back and written again.
func roundTrips(t testing.TB) []struct {
	name string
	tree *fstree.Tree
} {
	cases := []struct {
		name string
		tree *fstree.Tree
	}{
		{"empty", fstree.New(epoch)},
		{"base", baseTree(t)},
	}
	for _, c := range changes {
		cases = append(cases, struct {
			name string
			tree *fstree.Tree
		}{"change " + c.name, c.child(t)})
	}
	// Generated content, zero times, and data runs that end where a
	// write chunk does.
	gen := fstree.New(time.Time{})
	put(t, gen, "random", &fstree.Inode{Mode: fstree.ModeRegular | 0o644, Content: fstreetest.Random(5, 3*WriteChunk+7)})
	put(t, gen, "chunks", &fstree.Inode{Mode: fstree.ModeRegular | 0o644, Content: fstreetest.Sparse(5*WriteChunk, 6,
		fstree.Extent{Offset: 0, Length: WriteChunk}, fstree.Extent{Offset: 2 * WriteChunk, Length: 2 * WriteChunk})})
	put(t, gen, "zero", fstree.NewFile(0o644, make([]byte, 2*WriteChunk+1), time.Time{}))
	put(t, gen, "d/empty-dir", &fstree.Inode{Mode: fstree.ModeDir | 0o755, Children: map[string]*fstree.Inode{}})
	cases = append(cases, struct {
		name string
		tree *fstree.Tree
	}{"generated", gen})
	return cases
}

// TestReadFullRoundTrip: WriteFull then ReadFull gives the tree back
// (zero times as the epoch), with the same hash, and writing what was
// read gives the same stream.
func TestReadFullRoundTrip(t *testing.T) {
	for i, c := range roundTrips(t) {
		t.Run(c.name, func(t *testing.T) {
			o := Options{Name: subvolName(c.name), UUID: [16]byte{0x5e, byte(i)}, CTransid: uint64(100 + i)}
			stream := full(t, c.tree, o)
			got, gotOpts := readFull(t, stream)
			if gotOpts != o {
				t.Errorf("options %+v, want %+v", gotOpts, o)
			}
			want := fstreetest.EpochTimes(c.tree)
			sameTree(t, want, got, fstree.DiffOptions{})
			wh, err := want.Hash()
			if err != nil {
				t.Fatal(err)
			}
			if gh, err := got.Hash(); err != nil || gh != wh {
				t.Errorf("hash %s, %v; want %s", gh, err, wh)
			}
			if again := full(t, got, gotOpts); !bytes.Equal(again, stream) {
				t.Errorf("writing the tree read gives %d bytes that differ from the %d read", len(again), len(stream))
			}
		})
	}
}

var _ = fmt.Sprint
