// Package bench holds benchmarks that compare mkimage's writers with the
// libraries they replace. Run: go test -run '^$' -bench . ./bench/
package bench

import (
	"fmt"
	"io"
	"math/rand"
	"os"
	"path"
	"path/filepath"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"

	"github.com/mkimage/mkimage/internal/build/fat"
	"github.com/mkimage/mkimage/internal/fstree"
)

const fatPartition = 256 << 20

// bootTree is a boot partition of about 60 MB: a kernel, an initramfs and
// 100 device trees in vendor directories.
func bootTree(b *testing.B) (*fstree.Tree, int64) {
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	tr := fstree.New(t0)
	rnd := rand.New(rand.NewSource(1))
	data := func(n int) []byte { d := make([]byte, n); rnd.Read(d); return d }
	var total int64
	put := func(p string, d []byte) {
		if _, err := tr.MkdirAll(path.Dir(p), t0); err != nil {
			b.Fatal(err)
		}
		if err := tr.Put(p, fstree.NewFile(0o644, d, t0)); err != nil {
			b.Fatal(err)
		}
		total += int64(len(d))
	}
	put("Image", data(30<<20))
	put("initrd.img", data(25<<20))
	put("extlinux/extlinux.conf", data(300))
	for i := 0; i < 100; i++ {
		put(fmt.Sprintf("dtbs/vendor%d/board-%03d.dtb", i%10, i), data(50<<10))
	}
	return tr, total
}

func newPartition(b *testing.B) *os.File {
	f, err := os.Create(filepath.Join(b.TempDir(), "boot.img"))
	if err != nil {
		b.Fatal(err)
	}
	if err := f.Truncate(fatPartition); err != nil {
		b.Fatal(err)
	}
	return f
}

// BenchmarkFAT writes the same tree into a 256 MiB FAT32 partition with
// internal/build/fat and with go-diskfs v1.9.4's fat32 (all of a file in one
// Write call, its best case).
func BenchmarkFAT(b *testing.B) {
	b.Run("mkimage", func(b *testing.B) {
		tr, total := bootTree(b)
		b.SetBytes(total)
		for b.Loop() {
			f := newPartition(b)
			if _, err := fat.Write(f, tr, fat.Options{Size: fatPartition, VolumeID: 1}); err != nil {
				b.Fatal(err)
			}
			f.Close()
			os.Remove(f.Name())
		}
	})
	for _, chunk := range []int{0, 32 << 10} {
		name := "go-diskfs"
		if chunk > 0 {
			name = fmt.Sprintf("go-diskfs-%dKiB-writes", chunk>>10)
		}
		b.Run(name, func(b *testing.B) { benchDiskfs(b, chunk) })
	}
}

// benchDiskfs writes each file in chunk-sized Write calls (0: one call),
// as io.Copy (32 KiB) would.
func benchDiskfs(b *testing.B, chunk int) {
	tr, total := bootTree(b)
	b.SetBytes(total)
	for b.Loop() {
		f := newPartition(b)
		fs, err := fat32.Create(file.New(f, false), fatPartition, 0, 512, "BOOT", true)
		if err != nil {
			b.Fatal(err)
		}
		err = tr.Walk(func(p string, n *fstree.Inode) error {
			if p == "" {
				return nil
			}
			if n.IsDir() {
				return fs.Mkdir("/" + p)
			}
			w, err := fs.OpenFile("/"+p, os.O_CREATE|os.O_RDWR)
			if err != nil {
				return err
			}
			d, _ := fstree.ReadAll(n.Content)
			for len(d) > 0 {
				n := len(d)
				if chunk > 0 {
					n = min(n, chunk)
				}
				if _, err := w.Write(d[:n]); err != nil && err != io.EOF {
					return err
				}
				d = d[n:]
			}
			return w.Close()
		})
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
		os.Remove(f.Name())
	}
}
