package rootfs

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/testenv"
)

// FuzzAddTar reads root tarballs (plain or compressed) with and without
// dpkg's merged-/usr symlink following; what it accepts must be a valid
// tree.
func FuzzAddTar(f *testing.F) {
	sample := buildTar(f, []entry{
		{name: "./", typ: tar.TypeDir},
		{name: "./usr/lib/", typ: tar.TypeDir},
		{name: "./lib", link: "usr/lib", typ: tar.TypeSymlink},
		{name: "./lib/x.so", typ: tar.TypeReg, data: "elf"},
		{name: "./lib/y.so", link: "./lib/x.so", typ: tar.TypeLink},
		{name: "./etc/f", typ: tar.TypeReg, data: "x", pax: map[string]string{"SCHILY.xattr.user.a": "v", "LIBARCHIVE.xattr.user.b": "dg=="}},
		{name: "./dev/null", typ: tar.TypeChar},
	})
	for _, kind := range []string{"", "gz", "xz", "zst"} {
		f.Add(compressed(f, kind, sample), kind == "")
	}
	var sparse bytes.Buffer
	tw := tar.NewWriter(&sparse)
	must(f, tw.WriteHeader(&tar.Header{Name: "disk.img", Typeflag: tar.TypeReg, Size: 3 * 4096, Mode: 0o644,
		PAXRecords: map[string]string{"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}, Format: tar.FormatPAX}))
	tw.Write(append(make([]byte, 4096), bytes.Repeat([]byte{1}, 8192)...))
	must(f, tw.Close())
	f.Add(sparse.Bytes(), false)
	f.Fuzz(func(t *testing.T, b []byte, follow bool) {
		// Mutated headers mostly fail archive/tar's checksum; trying them
		// again with the checksum made right reaches our own checks.
		for _, in := range [][]byte{b, fixTarSums(b)} {
			tr := fstree.New(time.Unix(42, 0))
			if err := AddTar(tr, "fuzz.tar", bytes.NewReader(in), TarOptions{Epoch: time.Unix(42, 0), FollowDirSymlinks: follow}); err != nil {
				continue
			}
			if err := tr.Validate(); err != nil {
				t.Fatalf("accepted an archive into an invalid tree: %v", err)
			}
		}
	})
}

// fixTarSums returns b with the checksum of every 512-byte block that
// carries the ustar magic recomputed.
func fixTarSums(b []byte) []byte {
	out := bytes.Clone(b)
	for off := 0; off+512 <= len(out); off += 512 {
		h := out[off : off+512]
		if string(h[257:262]) != "ustar" {
			continue
		}
		copy(h[148:156], "        ")
		var sum int64
		for _, c := range h {
			sum += int64(c)
		}
		copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
	}
	return out
}

// TestHostileTarSize: a header may claim any size (8 GiB here, the most
// octal ustar holds, and 1 TiB in base-256); over a short stream AddTar
// fails naming the entry, within a few MiB and well under a second.
func TestHostileTarSize(t *testing.T) {
	for _, size := range []int64{4 << 30, 1<<33 - 1, 1 << 40} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			var b bytes.Buffer
			tw := tar.NewWriter(&b)
			must(t, tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Size: size, Mode: 0o644}))
			b.WriteString(strings.Repeat("x", 1000)) // the data, cut short
			var err error
			testenv.Bounded(t, 4<<20, 500*time.Millisecond, func() {
				tr := fstree.New(time.Unix(42, 0))
				err = AddTar(tr, "hostile.tar", bytes.NewReader(b.Bytes()), TarOptions{})
			})
			if want := fmt.Sprintf(`hostile.tar: entry "big": reading the %d bytes its header gives: %v`, size, io.ErrUnexpectedEOF); err == nil || err.Error() != want {
				t.Errorf("error %v, want %q", err, want)
			}
		})
	}
}
