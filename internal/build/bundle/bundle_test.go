package bundle

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/build/sendstream/sendstreamtest"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/fstree/fstreetest"
	"github.com/mkimage/mkimage/internal/testenv"
	"github.com/mkimage/mkimage/internal/update"
	"github.com/mkimage/mkimage/internal/update/updatetest"
)

var epoch = time.Unix(1700000000, 0)

func put(t testing.TB, tr *fstree.Tree, p string, n *fstree.Inode) {
	t.Helper()
	fstreetest.Put(t, tr, p, n, epoch)
}

// v1 is a small version: a root with files, a link, a device node and a
// big file, and its boot files.
func v1(t testing.TB) *Version {
	tr := fstree.New(epoch)
	put(t, tr, "etc/hostname", fstree.NewFile(0o644, []byte("node\n"), epoch))
	put(t, tr, "etc/motd", fstree.NewFile(0o644, []byte("version 1\n"), epoch))
	put(t, tr, "bin/busybox", &fstree.Inode{Mode: fstree.ModeRegular | 0o755, Content: fstreetest.Random(1, 3<<20), Mtime: epoch, Atime: epoch, Ctime: epoch})
	put(t, tr, "bin/sh", fstree.NewSymlink("busybox", epoch))
	put(t, tr, "dev/console", &fstree.Inode{Mode: fstree.ModeChar | 0o600, Major: 5, Minor: 1, Mtime: epoch, Atime: epoch, Ctime: epoch})
	return &Version{
		Board: "qemu-virt", Cmdline: "console=ttyAMA0 root=LABEL=root", Created: epoch,
		Kernel: []byte("kernel image 1"), Initrd: []byte("initramfs 1"), DTB: []byte("dtb"), Root: tr,
	}
}

// v2 changes v1's root (a changed, a new and a removed file), kernel
// command line and kernel.
func v2(t testing.TB) *Version {
	v := v1(t)
	v.Root = v.Root.Clone()
	put(t, v.Root, "etc/motd", fstree.NewFile(0o644, []byte("version 2\n"), epoch.Add(time.Hour)))
	put(t, v.Root, "etc/new", fstree.NewFile(0o600, []byte("new in 2\n"), epoch.Add(time.Hour)))
	dev, _ := v.Root.Lookup("dev")
	delete(dev.Children, "console")
	v.Cmdline += " marker=v2"
	v.Kernel = []byte("kernel image 2")
	v.Created = epoch.Add(time.Hour)
	return v
}

func write(t testing.TB, dir string, v *Version, key update.PrivateKey, parents ...Parent) update.Manifest {
	t.Helper()
	m, err := Write(dir, v, key, parents...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// files lists dir's names, sorted.
func files(t testing.TB, dir string) []string {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

func TestWrite(t *testing.T) {
	key := updatetest.Key(1)
	keys := []update.PublicKey{key.Public()}
	dir := filepath.Join(t.TempDir(), "v1")
	v := v1(t)
	m := write(t, dir, v, key)
	if got, want := files(t, dir), []string{"Image", "board.dtb", "initrd.img", "manifest.json", "manifest.sig", "root.full"}; !slices.Equal(got, want) {
		t.Errorf("bundle holds %v, want %v", got, want)
	}
	id, _ := v.ID()
	if m.ID != id || m.Board != "qemu-virt" || m.Parent != "" || m.Created != epoch.Unix() || m.Cmdline != v.Cmdline {
		t.Errorf("manifest %+v", m)
	}
	var kinds []string
	for _, p := range m.Payloads {
		kinds = append(kinds, p.Name+":"+p.Kind+":"+p.BootName)
	}
	if want := []string{"root.full:root-full:", "Image:boot:Image", "initrd.img:boot:initrd.img", "board.dtb:boot:board.dtb"}; !slices.Equal(kinds, want) {
		t.Errorf("payloads %v, want %v", kinds, want)
	}
	got, err := Verify(dir, keys)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != id {
		t.Errorf("Verify read id %s, want %s", got.ID, id)
	}

	// Reproducible: the same version gives the same bytes, and the id
	// changes with the content only.
	again := filepath.Join(t.TempDir(), "again")
	write(t, again, v1(t), key)
	for _, name := range files(t, dir) {
		a, _ := os.ReadFile(filepath.Join(dir, name))
		b, _ := os.ReadFile(filepath.Join(again, name))
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two writes of the same version", name)
		}
	}
	if id2, _ := v2(t).ID(); id2 == id {
		t.Error("v2 has v1's id")
	}

	// A firmware-DTB board has no board.dtb; an earlier bundle is
	// replaced whole.
	v.DTB = nil
	write(t, dir, v, key)
	if slices.Contains(files(t, dir), update.BootDTB) {
		t.Error("board.dtb left from the earlier bundle")
	}
	if _, err := Verify(dir, keys); err != nil {
		t.Error(err)
	}
}

// TestWriteIncremental: the seam --parent uses, with trees made here.
func TestWriteIncremental(t *testing.T) {
	key := updatetest.Key(1)
	parent := v1(t)
	pid, _ := parent.ID()
	dir := filepath.Join(t.TempDir(), "v2")
	m := write(t, dir, v2(t), key, Parent{ID: pid, Root: parent.Root})
	if m.Parent != pid {
		t.Errorf("manifest parent %q, want %s", m.Parent, pid)
	}
	inc := m.Payloads[1]
	if inc.Name != "root.from-"+pid || inc.Kind != update.KindRootIncremental || inc.Parent != pid {
		t.Errorf("incremental payload %+v", inc)
	}
	if full := m.Payloads[0]; inc.Size*10 > full.Size {
		t.Errorf("incremental stream %d bytes, full %d: want a tenth at most for a one-file change", inc.Size, full.Size)
	}
	if _, err := Verify(dir, []update.PublicKey{key.Public()}); err != nil {
		t.Fatal(err)
	}
	if _, err := Write(filepath.Join(t.TempDir(), "x"), parent, key, Parent{ID: pid, Root: parent.Root}); err == nil || !strings.Contains(err.Error(), "is this same version") {
		t.Errorf("bundle against itself: %v", err)
	}

	// --parent: the parent read back from its bundle's full stream gives
	// the same incremental stream as the tree it was written from.
	pdir := filepath.Join(t.TempDir(), "v1")
	write(t, pdir, parent, key)
	keys := []update.PublicKey{key.Public()}
	got, err := ReadParent(pdir, parent.Board, keys)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != pid {
		t.Errorf("ReadParent id %s, want %s", got.ID, pid)
	}
	dir2 := filepath.Join(t.TempDir(), "v2")
	write(t, dir2, v2(t), key, got)
	for _, name := range []string{update.ManifestFile, update.RootFrom(pid)} {
		if !bytes.Equal(readFile(t, filepath.Join(dir, name)), readFile(t, filepath.Join(dir2, name))) {
			t.Errorf("%s differs when the parent is read back from its bundle", name)
		}
	}
	if _, err := ReadParent(pdir, "other-board", keys); err == nil || !strings.Contains(err.Error(), "other-board") {
		t.Errorf("parent for another board: %v", err)
	}
	if _, err := ReadParent(pdir, parent.Board, []update.PublicKey{updatetest.Key(2).Public()}); err == nil {
		t.Error("parent signed by an unknown key: no error")
	}
}

// TestWriteFailure: a failed write leaves no bundle and no temporary
// files, and an earlier bundle where it was.
func TestWriteFailure(t *testing.T) {
	key := updatetest.Key(1)
	parentDir := t.TempDir()
	dir := filepath.Join(parentDir, "b")
	bad := fstree.New(epoch)
	put(t, bad, "x", &fstree.Inode{Mode: 0o777}) // no type: the stream writer refuses it
	_, err := Write(dir, v2(t), key, Parent{ID: "0123456789abcdef", Root: bad})
	if err == nil {
		t.Fatal("an invalid parent tree was written")
	}
	if got := files(t, parentDir); len(got) != 0 {
		t.Errorf("a failed write left %v", got)
	}
	m := write(t, dir, v1(t), key)
	if _, err := Write(dir, v2(t), key, Parent{ID: "0123456789abcdef", Root: bad}); err == nil {
		t.Fatal("an invalid parent tree was written")
	}
	if got, err := Verify(dir, []update.PublicKey{key.Public()}); err != nil || got.ID != m.ID {
		t.Errorf("the earlier bundle after a failed write: %v, id %s, want %s", err, got.ID, m.ID)
	}
	if got := files(t, parentDir); len(got) != 1 {
		t.Errorf("a failed write left %v", got)
	}
	other := filepath.Join(parentDir, "home")
	os.Mkdir(other, 0o755)
	if _, err := Write(other, v1(t), key); err == nil || !strings.Contains(err.Error(), "is not an update bundle (no manifest.json)") {
		t.Errorf("writing over a directory that is no bundle: %v", err)
	}
}

// TestVerifyRefuses: each way a bundle can be wrong is refused, naming
// the file and the fault.
func TestVerifyRefuses(t *testing.T) {
	key := updatetest.Key(1)
	src := filepath.Join(t.TempDir(), "b")
	m := write(t, src, v1(t), key)
	for _, c := range []struct {
		name  string
		edit  func(dir string)
		error string
	}{
		{"flipped byte in the manifest", func(dir string) { flip(t, filepath.Join(dir, "manifest.json"), 20) },
			"manifest.sig is not a signature of manifest.json by any of the 1 trusted keys (\"key 1\")"},
		{"signed by another key", func(dir string) {
			mb, _ := os.ReadFile(filepath.Join(dir, "manifest.json"))
			os.WriteFile(filepath.Join(dir, "manifest.sig"), update.Sign(mb, updatetest.Key(2)), 0o644)
		}, "the bundle was changed or signed with another key"},
		{"flipped byte in the root stream", func(dir string) { flip(t, filepath.Join(dir, "root.full"), 1000) },
			"payload root.full: sha256 "},
		{"flipped byte in the kernel", func(dir string) { flip(t, filepath.Join(dir, "Image"), 0) },
			"payload Image: sha256 "},
		{"extra bytes", func(dir string) { appendTo(t, filepath.Join(dir, "initrd.img"), "more") },
			fmt.Sprintf("payload initrd.img: more than the %d bytes manifest.json gives", m.Payloads[2].Size)},
		{"cut short", func(dir string) { os.Truncate(filepath.Join(dir, "root.full"), 100) },
			fmt.Sprintf("payload root.full: 100 bytes, manifest.json gives %d", m.Payloads[0].Size)},
		{"missing payload", func(dir string) { os.Remove(filepath.Join(dir, "board.dtb")) }, "board.dtb: no such file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "b")
			if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
				t.Fatal(err)
			}
			c.edit(dir)
			_, err := Verify(dir, []update.PublicKey{key.Public()})
			if err == nil || !strings.Contains(err.Error(), c.error) {
				t.Errorf("error %v, want one containing %q", err, c.error)
			}
			if c.name != "missing payload" && !errors.Is(err, update.ErrInvalid) {
				t.Errorf("%v does not wrap update.ErrInvalid", err)
			}
		})
	}
}

func flip(t testing.TB, path string, off int) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 1
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func appendTo(t testing.TB, path, s string) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(s)
	f.Close()
}

func readFile(t testing.TB, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReceive has the real btrfs tools take a bundle's streams: --dump
// parses them, and btrfs receive makes v1 from root.full, named by its id
// with the received UUID and send transid update.RootIdentity gives, then
// v2 from root.from-<v1>. btrfs receive finds an incremental stream's
// parent by received UUID in the filesystem's UUID tree (cmds/receive.c,
// search_source_subvol), so the same stream needs no parent on another
// filesystem.
func TestReceive(t *testing.T) {
	testenv.NeedTools(t, "btrfs")
	mnt := testenv.ScratchBtrfs(t)
	key := updatetest.Key(1)
	dir := t.TempDir()
	old, cur := v1(t), v2(t)
	m1 := write(t, filepath.Join(dir, "v1"), old, key)
	m2 := write(t, filepath.Join(dir, "v2"), cur, key, Parent{ID: m1.ID, Root: old.Root})

	full := readFile(t, filepath.Join(dir, "v1", "root.full"))
	if len(sendstreamtest.Dump(t, full)) == 0 {
		t.Fatal("btrfs receive --dump lists nothing in root.full")
	}
	uuid1, ctransid1, _ := update.RootIdentity(m1.ID)
	sendstreamtest.Receive(t, mnt, full, m1.ID, uuid1, old.Root)
	show := testenv.Run(t, "btrfs", "subvolume", "show", filepath.Join(mnt, m1.ID))
	if want := fmt.Sprintf("Send transid: \t\t%d", ctransid1); !strings.Contains(show, want) {
		t.Errorf("received v1 has no %q:\n%s", want, show)
	}
	if t.Failed() {
		t.FailNow()
	}

	inc := readFile(t, filepath.Join(dir, "v2", update.RootFrom(m1.ID)))
	if len(sendstreamtest.Dump(t, inc)) == 0 {
		t.Fatal("btrfs receive --dump lists nothing in the incremental stream")
	}
	uuid2, _, _ := update.RootIdentity(m2.ID)
	sendstreamtest.Receive(t, mnt, inc, m2.ID, uuid2, cur.Root)

	// Without v1 on the filesystem the incremental stream has no parent.
	empty := testenv.ScratchBtrfs(t)
	out, err := exec.Command("btrfs", "receive", "-f", sendstreamtest.WriteStream(t, inc), empty).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "cannot find parent subvolume") {
		t.Errorf("incremental stream without its parent: %v\n%s", err, out)
	}
}
