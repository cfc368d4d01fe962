package sendstream

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/mkimage/mkimage/internal/build/kmod/kmodtest"
	"github.com/mkimage/mkimage/internal/build/rootfs"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/testenv"
)

// benchRoot is a realistic node root: Debian's arm64 busybox-static with
// applet links and a few /etc files, plus the kernel package (image and
// about 5,000 modules, 350 MB).
func benchRoot(b testing.TB) *fstree.Tree {
	tr := fstree.New(epoch)
	for _, prefix := range []string{"busybox-static_", "linux-image-"} {
		src, err := rootfs.HostDir(kmodtest.Unpack(b, kmodtest.Deb(b, prefix)), rootfs.HostOptions{RootOwned: true})
		if err != nil {
			b.Fatal(err)
		}
		tr.Merge(src)
	}
	for _, name := range []string{"sh", "ls", "cat", "mount", "ip", "vi"} {
		put(b, tr, "bin/"+name, fstree.NewSymlink("busybox", epoch))
	}
	put(b, tr, "etc/hostname", fstree.NewFile(0o644, []byte("node\n"), epoch))
	put(b, tr, "etc/passwd", fstree.NewFile(0o644, []byte("root:x:0:0:root:/root:/bin/sh\n"), epoch))
	return tr
}

// TestReceiveRealRoot: btrfs receive of a real root's full stream, and of
// an incremental one patching its busybox binary, read back whole.
func TestReceiveRealRoot(t *testing.T) {
	testenv.Short(t)
	testenv.NeedRoot(t)
	tree := benchRoot(t)
	mnt := testenv.ScratchBtrfs(t)
	receive(t, mnt, full(t, tree, baseOpts), baseOpts, tree)
	child := tree.Clone()
	patchBusybox(t, child)
	o := Options{Name: "v2", UUID: [16]byte{2}, CTransid: 8, ParentUUID: baseOpts.UUID, ParentCTransid: baseOpts.CTransid}
	stream := incremental(t, tree, child, o)
	checkDump(t, stream)
	receive(t, mnt, stream, o, child)
}

// patchBusybox flips one byte in the middle of bin/busybox.
func patchBusybox(t testing.TB, tr *fstree.Tree) {
	n := lookup(t, tr, "bin/busybox")
	data, err := fstree.ReadAll(n.Content)
	if err != nil {
		t.Fatal(err)
	}
	data = append([]byte(nil), data...)
	data[len(data)/2] ^= 0xff
	n.Content, n.Mtime = fstree.Bytes(data), ts(2)
}

type counter int64

func (c *counter) Write(p []byte) (int, error) { *c += counter(len(p)); return len(p), nil }

// BenchmarkSize reports the stream sizes of benchRoot: full, and
// incremental after a one-file change (a small config file, and one byte
// of the 2 MB busybox binary), beside the kernel's `btrfs send` of the
// same subvolumes received on a scratch filesystem (as root).
//
//	go test -run '^$' -bench Size -benchtime 1x ./internal/build/sendstream
func BenchmarkSize(b *testing.B) {
	tree := benchRoot(b)
	edits := []struct {
		name string
		do   func(tr *fstree.Tree)
	}{
		{"etc/hostname edited", func(tr *fstree.Tree) {
			n := lookup(b, tr, "etc/hostname")
			n.Content, n.Mtime = fstree.Bytes("node-2\n"), ts(1)
		}},
		{"bin/busybox 1 byte patched", func(tr *fstree.Tree) { patchBusybox(b, tr) }},
	}
	children := make([]*fstree.Tree, len(edits))
	for i, e := range edits {
		children[i] = tree.Clone()
		e.do(children[i])
	}
	var fullSize counter
	incSize := make([]counter, len(edits))
	for b.Loop() {
		fullSize = 0
		if err := WriteFull(&fullSize, tree, baseOpts); err != nil {
			b.Fatal(err)
		}
		for i := range edits {
			incSize[i] = 0
			if err := WriteIncremental(&incSize[i], tree, children[i], Options{Name: fmt.Sprint("v", i), UUID: [16]byte{2, byte(i)}, CTransid: 8, ParentUUID: baseOpts.UUID, ParentCTransid: baseOpts.CTransid}); err != nil {
				b.Fatal(err)
			}
		}
	}
	st := tree.Stats()
	b.ReportMetric(float64(fullSize), "full-bytes")
	kernel := kernelSizes(b, tree, children)
	out := fmt.Sprintf("tree: %d entries, %d data bytes\n%-42s %14s %14s\n%-42s %14d %14s\n",
		st.Entries, st.DataBytes, "stream", "ours (bytes)", "btrfs send", "full", fullSize, kernel[0])
	for i, e := range edits {
		b.ReportMetric(float64(incSize[i]), fmt.Sprintf("incr%d-bytes", i+1))
		out += fmt.Sprintf("%-42s %14d %14s\n", "incremental: "+e.name, incSize[i], kernel[i+1])
	}
	fmt.Fprint(os.Stderr, out)
}

// kernelSizes receives our streams on a scratch filesystem and returns
// the sizes of the kernel's `btrfs send` of the results (full, then each
// child against the base), or "-" where it could not run.
func kernelSizes(b *testing.B, tree *fstree.Tree, children []*fstree.Tree) []string {
	sizes := make([]string, len(children)+1)
	for i := range sizes {
		sizes[i] = "-"
	}
	if os.Geteuid() != 0 {
		return sizes
	}
	if _, err := exec.LookPath("mkfs.btrfs"); err != nil {
		return sizes
	}
	mnt := testenv.ScratchBtrfs(b)
	dir := b.TempDir()
	stream := filepath.Join(dir, "s")
	recv := func(write func(io.Writer) error) {
		f, err := os.Create(stream)
		if err != nil {
			b.Fatal(err)
		}
		if err := write(f); err != nil {
			b.Fatal(err)
		}
		f.Close()
		testenv.Run(b, "btrfs", "receive", "-f", stream, mnt)
	}
	send := func(args ...string) string {
		out := filepath.Join(dir, "k")
		testenv.Run(b, "btrfs", append([]string{"send", "-q", "-f", out}, args...)...)
		st, err := os.Stat(out)
		if err != nil {
			b.Fatal(err)
		}
		return fmt.Sprint(st.Size())
	}
	recv(func(w io.Writer) error { return WriteFull(w, tree, baseOpts) })
	base := filepath.Join(mnt, baseOpts.Name)
	sizes[0] = send(base)
	for i, c := range children {
		o := Options{Name: fmt.Sprint("v", i), UUID: [16]byte{2, byte(i)}, CTransid: 8, ParentUUID: baseOpts.UUID, ParentCTransid: baseOpts.CTransid}
		recv(func(w io.Writer) error { return WriteIncremental(w, tree, c, o) })
		sizes[i+1] = send("-p", base, filepath.Join(mnt, o.Name))
	}
	return sizes
}
