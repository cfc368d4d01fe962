package cpio_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ulikunitz/xz"

	"github.com/mkimage/mkimage/internal/build/cpio"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/testenv"
)

// FuzzRead reads archives the way tests and the busybox initramfs path
// do; whatever Read accepts must write out and read back the same.
func FuzzRead(f *testing.F) {
	f.Add(write(f, sample(f)))
	f.Add(write(f, fstree.New(epoch)))
	// The head of a real initramfs the tool built (cached by earlier
	// builds): real names, modes and sizes, cut where the mutator copes.
	for _, p := range testenv.CacheFiles("initramfs/*.cpio") {
		if b, err := testenv.Head(p, 32<<10); err == nil {
			f.Add(b)
		}
	}
	for _, p := range testenv.CacheFiles("initramfs/*.cpio.xz") {
		if b, err := unxzHead(p, 32<<10); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := cpio.Read(bytes.NewReader(b))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := cpio.Write(&out, tr); err != nil {
			return // trees Validate refuses (a FIFO with content, ...)
		}
		back, err := cpio.Read(&out)
		if err != nil {
			t.Fatalf("reading back what Write wrote: %v", err)
		}
		if d, err := fstree.Diff(tr, back, fstree.DiffOptions{IgnoreAtime: true, IgnoreCtime: true, IgnoreRoot: true}); err != nil || len(d) > 0 {
			t.Fatalf("read, write, read differs: %v %q", err, d)
		}
	})
}

// unxzHead returns the first n bytes of the xz-compressed file at p.
func unxzHead(p string, n int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := xz.NewReader(f)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(r, n))
}

// TestHostileSizes: a header may claim up to 4 GiB of data; over a short
// stream Read fails naming the entry and the claim, within a few MiB and
// well under a second.
func TestHostileSizes(t *testing.T) {
	for _, size := range []uint32{1 << 20, 1<<31 + 3, 1<<32 - 1} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			var b bytes.Buffer
			fmt.Fprintf(&b, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
				1, fstree.ModeRegular|0o644, 0, 0, 1, 0, size, 0, 0, 0, 0, len("big")+1, 0)
			b.WriteString("big\x00")
			b.WriteString(strings.Repeat("x", 1000))
			var err error
			testenv.Bounded(t, 4<<20, 500*time.Millisecond, func() {
				_, err = cpio.Read(bytes.NewReader(b.Bytes()))
			})
			want := fmt.Sprintf(`cpio entry "big": header says %d bytes of data: unexpected EOF`, size)
			if err == nil || err.Error() != want {
				t.Errorf("error %v, want %q", err, want)
			}
		})
	}
}
