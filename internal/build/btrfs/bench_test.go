package btrfs

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mkimage/mkimage/internal/build/rootfs"
	"github.com/mkimage/mkimage/internal/fstree"
)

// BenchmarkWriteHostDir reads the directory $BTRFS_BENCH_TREE into a tree
// and writes it as an image (to $BTRFS_BENCH_OUT if set): what
// bench/btrfs.sh compares with mkfs.btrfs --rootdir.
func BenchmarkWriteHostDir(b *testing.B) {
	dir := os.Getenv("BTRFS_BENCH_TREE")
	if dir == "" {
		b.Skip("set BTRFS_BENCH_TREE to a directory (bench/btrfs.sh does)")
	}
	out := os.Getenv("BTRFS_BENCH_OUT")
	if out == "" {
		out = filepath.Join(b.TempDir(), "bench.img")
	}
	for b.Loop() {
		tr, err := rootfs.HostDir(dir, rootfs.HostOptions{})
		if err != nil {
			b.Fatal(err)
		}
		res, err := WriteImageFile(out, tr, Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(res.Size), "image-bytes")
	}
}

// BenchmarkWriteGenerated writes 200 MB in 20k files from memory to a
// discarding writer: the writer's own cost without disk I/O.
func BenchmarkWriteGenerated(b *testing.B) {
	tr := fstree.New(epoch)
	for i := 0; i < 20000; i++ {
		mustPut(b, tr, filepathJoin(i), &fstree.Inode{Mode: fstree.ModeRegular | 0o644, Content: fstree.Bytes(make([]byte, 10000)), Mtime: ts(i)})
	}
	b.SetBytes(20000 * 10000)
	for b.Loop() {
		if _, err := Write(discard{}, tr, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

func filepathJoin(i int) string {
	return filepath.Join("d"+itoa(int64(i%100)), "f"+itoa(int64(i)))
}
