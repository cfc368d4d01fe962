package sendstream

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/build/rootfs"
	"github.com/mkimage/mkimage/internal/build/sendstream/sendstreamtest"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/fstree/fstreetest"
	"github.com/mkimage/mkimage/internal/testenv"
)

// kernelSend returns the kernel's `btrfs send` of subvolume sub (made
// read-only first), with extra arguments such as --no-data.
func kernelSend(t testing.TB, sub string, args ...string) []byte {
	t.Helper()
	testenv.Run(t, "btrfs", "property", "set", "-ts", sub, "ro", "true")
	out := filepath.Join(t.TempDir(), "kernel.stream")
	testenv.Run(t, "btrfs", append(append([]string{"send", "-q", "-f", out}, args...), sub)...)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReadFullKernelOfOurs: btrfs receive of our stream of the base
// tree, the kernel's full send of what it received, read back: the same
// tree (ctime aside, receive sets it), the received UUID the kernel
// names the subvolume with.
func TestReadFullKernelOfOurs(t *testing.T) {
	mnt := testenv.ScratchBtrfs(t)
	base := baseTree(t)
	receive(t, mnt, full(t, base, baseOpts), baseOpts, base)
	got, o := readFull(t, kernelSend(t, filepath.Join(mnt, baseOpts.Name)))
	if o.Name != baseOpts.Name || o.UUID != baseOpts.UUID {
		t.Errorf("options %+v, want name %s and UUID %x", o, baseOpts.Name, baseOpts.UUID)
	}
	sendstreamtest.SameTree(t, fstreetest.EpochTimes(base), got, fstree.DiffOptions{IgnoreCtime: true}, "what ReadFull read of the kernel's stream")
}

// kernelTree fills a new subvolume at sub with what makes the kernel's
// full send use its other commands: directories made under temporary
// names and renamed (a directory moved into a younger one), hard links,
// a shared extent (clone), a sparse file, devices, xattrs and a file
// capability.
func kernelTree(t testing.TB, sub string) {
	t.Helper()
	testenv.Run(t, "btrfs", "subvolume", "create", sub)
	at := func(p string) string { return filepath.Join(sub, p) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Mkdir(at("a"), 0o755))
	must(os.Mkdir(at("b"), 0o750))
	must(os.Rename(at("a"), at("b/a")))
	must(os.WriteFile(at("b/a/f"), []byte("hard linked\n"), 0o644))
	must(os.Link(at("b/a/f"), at("hl")))
	must(os.Chown(at("hl"), 5, 6))
	must(unix.Chmod(at("hl"), 0o4755)) // os.Chmod would drop the setuid bit
	must(unix.Setxattr(at("hl"), capability, cap20, 0))
	must(unix.Setxattr(at("b"), "user.x", []byte("hello"), 0))
	must(os.Symlink("b/a/f", at("sym")))
	must(unix.Mkfifo(at("fifo"), 0o640))
	must(unix.Mknod(at("null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3)))) // 0644 after the umask
	data := bytes.Repeat([]byte("shared extent "), 150)                     // past max_inline (2048): an extent to share
	must(os.WriteFile(at("data"), data, 0o644))
	src, err := os.Open(at("data"))
	must(err)
	defer src.Close()
	dst, err := os.Create(at("data.clone"))
	must(err)
	must(unix.IoctlFileClone(int(dst.Fd()), int(src.Fd())))
	must(dst.Close())
	sparse, err := os.Create(at("sparse"))
	must(err)
	_, err = sparse.WriteAt([]byte("x"), 1000000)
	must(err)
	must(sparse.Truncate(3000000))
	must(sparse.Close())
	must(os.WriteFile(at("empty"), nil, 0o600))
	old := time.Unix(-86400*365, 5)
	must(os.Chtimes(at("empty"), old, old))
}

// TestReadFullKernel: the kernel's full send of a subvolume made with
// the host's own calls reads back as the subvolume reads from disk,
// ctime included; --no-data and incremental streams are refused, saying
// why.
func TestReadFullKernel(t *testing.T) {
	mnt := testenv.ScratchBtrfs(t)
	sub := filepath.Join(mnt, "k")
	kernelTree(t, sub)
	stream := kernelSend(t, sub)
	ops := decode(t, stream)
	var cmds []string
	for _, o := range ops {
		cmds = append(cmds, o.cmd)
	}
	for _, want := range []string{"rename", "link", "clone", "truncate", "set_xattr", "mknod", "mkfifo"} {
		if !strings.Contains(strings.Join(cmds, " "), want) {
			t.Errorf("the kernel's stream has no %s, so this test does not read one: %v", want, cmds)
		}
	}
	got, o := readFull(t, stream)
	if o.Name != "k" {
		t.Errorf("name %q", o.Name)
	}
	disk, err := rootfs.HostDir(sub, rootfs.HostOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sendstreamtest.SameTree(t, disk, got, fstree.DiffOptions{}, "what ReadFull read of the kernel's stream")

	if _, _, err := ReadFull(bytes.NewReader(kernelSend(t, sub, "--no-data")), Limits{}); err == nil || !strings.Contains(err.Error(), "update_extent") || !strings.Contains(err.Error(), "--no-data") {
		t.Errorf("--no-data stream: %v", err)
	}
	testenv.Run(t, "btrfs", "subvolume", "snapshot", "-r", sub, filepath.Join(mnt, "k2"))
	if _, _, err := ReadFull(bytes.NewReader(kernelSend(t, filepath.Join(mnt, "k2"), "-p", sub)), Limits{}); err == nil || !strings.Contains(err.Error(), "ReadFull needs a full stream") {
		t.Errorf("incremental stream: %v", err)
	}
}
