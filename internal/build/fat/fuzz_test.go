package fat

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/testenv"
)

// minSize is the smallest FAT32 volume Write makes (512-byte clusters).
const minSize = 34 << 20

// compactVolume writes tr to a smallest FAT32 volume and squeezes it into
// a few KB the reader still takes (it does not insist on FAT32's minimum
// cluster count): one reserved sector, FATs cut to the clusters in use,
// the data area moved up behind them, the total shrunk to match.
func compactVolume(t testing.TB, tr *fstree.Tree) []byte {
	t.Helper()
	g := mustGeom(t, minSize)
	img := &memImage{}
	if _, err := Write(img, tr, Options{Size: minSize, VolumeID: 0x1234}); err != nil {
		t.Fatal(err)
	}
	full := img.bytes(minSize)
	le := binary.LittleEndian
	used := uint32(2)
	for c := uint32(2); c < g.clusters+2; c++ {
		if le.Uint32(full[g.fatOffset(0)+4*int64(c):]) != 0 {
			used = c + 1
		}
	}
	fatSec := (used*4 + sectorSize - 1) / sectorSize
	var out bytes.Buffer
	bs := bytes.Clone(full[:sectorSize])
	le.PutUint16(bs[14:], 1)
	le.PutUint32(bs[36:], fatSec)
	le.PutUint32(bs[32:], 1+2*fatSec+(used-2)*g.sectorsPerClus)
	out.Write(bs)
	for i := 0; i < 2; i++ {
		out.Write(full[g.fatOffset(0):][:fatSec*sectorSize])
	}
	out.Write(full[g.dataOffset():][:int64(used-2)*g.clusterBytes()])
	return out.Bytes()
}

// memImage is a sparse in-memory io.WriterAt.
type memImage struct{ b []byte }

func (m *memImage) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	return copy(m.b[off:], p), nil
}

func (m *memImage) bytes(size int64) []byte {
	return append(m.b, make([]byte, size-int64(len(m.b)))...)
}

func smallTree(t testing.TB) *fstree.Tree {
	tr := fstree.New(t0)
	for p, b := range map[string]string{
		"extlinux/extlinux.conf":  "default x\n",
		"mkimage.json":            `{"board":"qemu-virt"}`,
		"a long name ÜNICODE.txt": strings.Repeat("x", 1500),
	} {
		if _, err := tr.MkdirAll("extlinux", t0); err != nil {
			t.Fatal(err)
		}
		if err := tr.Put(p, fstree.NewFile(0o644, []byte(b), t0)); err != nil {
			t.Fatal(err)
		}
	}
	return tr
}

func TestCompactVolume(t *testing.T) {
	b := compactVolume(t, smallTree(t))
	fs, err := Open(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := fs.ReadFile("a long name ünicode.txt")
	if err != nil || len(got) != 1500 {
		t.Fatalf("read back %d bytes, %v", len(got), err)
	}
}

// FuzzOpen feeds the reader behind `mkimage inspect` and the QEMU
// runner whole volumes: Open, List and every file read.
func FuzzOpen(f *testing.F) {
	f.Add(compactVolume(f, smallTree(f)))
	f.Add(compactVolume(f, fstree.New(t0)))
	f.Fuzz(func(t *testing.T, b []byte) {
		fs, err := Open(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		ents, err := fs.List()
		if err != nil {
			return
		}
		for _, e := range ents {
			if e.Dir {
				continue
			}
			if data, err := fs.ReadFile(e.Path); err == nil && int64(len(data)) != e.Size {
				t.Fatalf("%s: read %d bytes, entry says %d", e.Path, len(data), e.Size)
			}
			if ext, err := fs.Extents(e.Path); err == nil {
				var n int64
				for _, r := range ext {
					n += r.Length
				}
				if n < e.Size {
					t.Fatalf("%s: extents %v hold %d bytes, entry says %d", e.Path, ext, n, e.Size)
				}
			}
		}
	})
}

// TestHostile holds the reader to bounded memory and time on volumes made
// to exhaust it: each is refused, naming what is wrong.
func TestHostile(t *testing.T) {
	base := compactVolume(t, smallTree(t))
	le := binary.LittleEndian
	fatAt := int64(sectorSize)
	for _, tt := range []struct {
		name string
		edit func(b []byte) []byte
		size int64 // size claimed to Open (0: len(b))
		err  string
	}{
		{"root chain loops", func(b []byte) []byte {
			le.PutUint32(b[fatAt+4*2:], 2) // cluster 2 -> 2
			return b
		}, 0, "loops back to cluster 2"},
		{"long loop through every cluster", func(b []byte) []byte {
			n := le.Uint32(b[36:]) * sectorSize / 4
			for c := uint32(2); c < n; c++ {
				le.PutUint32(b[fatAt+4*int64(c):], c+1)
			}
			le.PutUint32(b[fatAt+4*int64(n-1):], 3)
			return b
		}, 0, "cluster chain from 2"},
		{"partition table claims 2 TiB", func(b []byte) []byte {
			le.PutUint32(b[32:], 0xffffffff) // total sectors
			le.PutUint32(b[36:], 1<<28)      // FAT sectors: 1 GiB of entries
			return b
		}, 0xffffffff * sectorSize, "reading the FAT"},
		{"FAT count wraps the data area", func(b []byte) []byte {
			le.PutUint32(b[32:], 0xffffffff)
			le.PutUint32(b[36:], 0x80000000)
			b[16] = 2 // 2 * 2^31 wraps to 0 in 32 bits
			return b
		}, 0xffffffff * sectorSize, "data area starts at sector 4294967297"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.edit(bytes.Clone(base))
			size := tt.size
			if size == 0 {
				size = int64(len(b))
			}
			var err error
			testenv.Bounded(t, 4<<20, 500*time.Millisecond, func() {
				var fs *FS
				if fs, err = Open(bytes.NewReader(b), size); err == nil {
					_, err = fs.List()
				}
			})
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("error %v, want %q", err, tt.err)
			}
		})
	}
}
