package btrfs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/build/rootfs"
	"github.com/mkimage/mkimage/internal/build/sendstream"
	"github.com/mkimage/mkimage/internal/cachedir"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/testenv"
)

// debianRoot is a debootstrap --foreign tree, made once and reused.
const debianRoot = "/root/.cache/mkimage/test-debian-root"

// needDebianRoot returns the Debian arm64 minbase root, making it with
// debootstrap when it is missing (as root, needs the network).
func needDebianRoot(t *testing.T) *fstree.Tree {
	testenv.Short(t)
	testenv.NeedRoot(t)
	if _, err := os.Stat(filepath.Join(debianRoot, "debootstrap")); err != nil {
		testenv.NeedTools(t, "debootstrap")
		tmp := debianRoot + ".tmp"
		os.RemoveAll(tmp)
		out, err := exec.Command("debootstrap", "--foreign", "--variant=minbase", "--arch=arm64", "bookworm", tmp).CombinedOutput()
		if err != nil {
			t.Fatalf("debootstrap: %v\n%s", err, out)
		}
		if err := os.Rename(tmp, debianRoot); err != nil {
			t.Fatal(err)
		}
	}
	cachedir.Touch(debianRoot)
	tr, err := rootfs.HostDir(debianRoot, rootfs.HostOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestDebianRoot(t *testing.T) {
	tr := needDebianRoot(t)
	st := tr.Stats()
	img, res := writeImage(t, tr, Options{RootSubvolume: "@", Label: "debian"})
	t.Logf("%d entries, %d data bytes: image %d bytes, %d used", st.Entries, st.DataBytes, res.Size, res.Used)
	btrfsCheck(t, img)
	img2, _ := writeImage(t, tr, Options{RootSubvolume: "@", Label: "debian"})
	if sha256File(t, img) != sha256File(t, img2) {
		t.Error("two writes of the Debian root differ")
	}
	os.Remove(img2)
	mark := dmesgMark()
	dir := mount(t, img, false)
	compareTree(t, dir, tr, nil)
	umount(t, dir)
	if bad := kernelComplaints(mark); len(bad) > 0 {
		t.Errorf("kernel complained:\n%s", strings.Join(bad, "\n"))
	}
}

// TestReadWrite uses the image as a node would: writes, a snapshot, a
// grown device and a scrub, with btrfs check clean afterwards. A minimal
// image (no headroom) is grown first, as a node's first boot does.
func TestReadWrite(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "btrfs", "losetup")
	tr := corpus(t, false)["kinds"]
	for i, o := range []Options{
		{Headroom: 64 << 20},
		{RootSubvolume: "@", Subvolumes: []string{".snapshots"}, Metadata: Single, Headroom: 64 << 20},
		{RootSubvolume: "@"}, // minimal: grow before writing
	} {
		growFirst := o.Headroom == 0
		img, res := writeImage(t, tr, o)
		mark := dmesgMark()
		dir := mount(t, img, true)
		grow := func() {
			if err := os.Truncate(img, res.Size+512<<20); err != nil {
				t.Fatal(err)
			}
			dev, _, _ := strings.Cut(strings.TrimSpace(testenv.Run(t, "findmnt", "-n", "-o", "SOURCE", "--mountpoint", dir)), "[")
			testenv.Run(t, "losetup", "-c", dev)
			testenv.Run(t, "btrfs", "filesystem", "resize", "max", dir)
		}
		if growFirst {
			grow()
		}
		if err := os.WriteFile(filepath.Join(dir, "new.txt"), []byte("written by the kernel\n"), 0o644); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		big := make([]byte, 20<<20)
		for i := range big {
			big[i] = byte(i * 7)
		}
		if err := os.WriteFile(filepath.Join(dir, "srv", "big"), big, 0o644); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		os.Remove(filepath.Join(dir, "hl1"))
		testenv.Run(t, "sync")
		snapDir := dir
		if len(o.Subvolumes) > 0 {
			snapDir = filepath.Join(dir, ".snapshots")
		}
		testenv.Run(t, "btrfs", "subvolume", "snapshot", dir, filepath.Join(snapDir, "snap1"))
		if !growFirst {
			grow()
		}
		if err := os.WriteFile(filepath.Join(dir, "after-grow"), big, 0o644); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		testenv.Run(t, "sync")
		out := testenv.Run(t, "btrfs", "scrub", "start", "-B", dir)
		if !strings.Contains(out, "no errors found") {
			t.Errorf("case %d: scrub: %s", i, out)
		}
		umount(t, dir)
		if bad := kernelComplaints(mark); len(bad) > 0 {
			t.Errorf("case %d: kernel complained:\n%s", i, strings.Join(bad, "\n"))
		}
		btrfsCheck(t, img)
		out = testenv.Run(t, "btrfs", "inspect-internal", "dump-super", img)
		if want := res.Size + 512<<20; !strings.Contains(out, "total_bytes\t\t"+itoa(want)) {
			t.Errorf("case %d: device not grown to %d bytes:\n%s", i, want, out)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestSubvolumes: a default root subvolume with nested ones; the kernel
// mounts the default with no options.
func TestSubvolumes(t *testing.T) {
	testenv.NeedTools(t, "btrfs")
	tr := corpus(t, false)["kinds"]
	o := Options{RootSubvolume: "@", Subvolumes: []string{".snapshots", "var/lib/lxc", "tmp", "var/lib/lxc/c1/rootfs"}}
	img, _ := writeImage(t, tr, o)
	btrfsCheck(t, img)
	if _, ok := tr.Lookup("var"); ok {
		t.Fatal("Write changed the caller's tree")
	}
	testenv.NeedRoot(t)
	mark := dmesgMark()
	dir := mount(t, img, false)
	want := corpus(t, false)["kinds"]
	want.MkdirAll(".snapshots", epoch)
	want.MkdirAll("var/lib/lxc/c1/rootfs", epoch)
	compareTree(t, dir, want, nil)
	for _, p := range []string{".snapshots", "var/lib/lxc/c1/rootfs"} {
		if fi, err := os.Stat(filepath.Join(dir, p)); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v", p, err)
		}
	}
	list := testenv.Run(t, "btrfs", "subvolume", "list", dir)
	for _, want := range []string{"ID 256 gen 1 top level 5 path @\n", "top level 256 path .snapshots\n", "top level 256 path var/lib/lxc\n", "top level 256 path tmp\n", "top level 259 path var/lib/lxc/c1/rootfs\n"} {
		if !strings.Contains(list, want) {
			t.Errorf("btrfs subvolume list lacks %q:\n%s", want, list)
		}
	}
	if def := testenv.Run(t, "btrfs", "subvolume", "get-default", dir); !strings.Contains(def, "ID 256") {
		t.Errorf("default subvolume: %s", def)
	}
	umount(t, dir)
	if bad := kernelComplaints(mark); len(bad) > 0 {
		t.Errorf("kernel complained:\n%s", strings.Join(bad, "\n"))
	}
}

func TestTooSmall(t *testing.T) {
	tr := corpus(t, false)["kinds"]
	min, err := MinSize(tr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Write(discard{}, tr, Options{Size: min - 4096})
	if err == nil || !strings.Contains(err.Error(), itoa(min)) || !strings.Contains(err.Error(), itoa(min-4096)) {
		t.Fatalf("Write with a too small size: %v (want both %d and %d named)", err, min-4096, min)
	}
	if _, err := Write(discard{}, tr, Options{Size: min}); err != nil {
		t.Fatalf("Write at MinSize: %v", err)
	}
	for _, o := range []Options{{NodeSize: 1000}, {RootSubvolume: "a/b"}, {Subvolumes: []string{"bin/prog"}}, {Subvolumes: []string{"../x"}}} {
		if _, err := Write(discard{}, tr, o); err == nil {
			t.Errorf("Write(%+v) accepted bad options", o)
		}
	}
}

type discard struct{}

func (discard) WriteAt(p []byte, off int64) (int, error) { return len(p), nil }

// TestReceived: a subvolume written as received from a stream is what
// `btrfs receive` would have left (read-only, received UUID and stransid,
// the UUID tree entry), so an incremental stream against that stream's
// version applies to the image: an update lands on a freshly flashed card.
func TestReceived(t *testing.T) {
	testenv.NeedTools(t, "btrfs")
	v1 := corpus(t, false)["kinds"]
	top := fstree.New(epoch)
	if _, err := top.MkdirAll("roots", epoch); err != nil {
		t.Fatal(err)
	}
	if err := top.Put("roots/v1", v1.Clone().Root); err != nil {
		t.Fatal(err)
	}
	u1 := sendstream.Options{Name: "v1", UUID: [16]byte{1, 2, 3, 4, 5, 6, 0x47, 8, 0x89, 10, 11, 12, 13, 14, 15, 16}, CTransid: 7}
	o := Options{
		Subvolumes: []string{"roots/v1", "state/lxc"},
		Received:   map[string]Received{"roots/v1": {UUID: u1.UUID, Transid: u1.CTransid}},
		Headroom:   64 << 20,
	}
	img, _ := writeImage(t, top, o)
	btrfsCheck(t, img)

	for _, bad := range []map[string]Received{{"state": {}}, {"roots/v2": {}}, {"../x": {}}} {
		if _, err := Write(discard{}, top, Options{Subvolumes: o.Subvolumes, Received: bad}); err == nil {
			t.Errorf("Received %v: no error for a path that is not one of the Subvolumes", bad)
		}
	}

	testenv.NeedRoot(t)
	mark := dmesgMark()
	dir := mount(t, img, true)
	sub := filepath.Join(dir, "roots/v1")
	show := testenv.Run(t, "btrfs", "subvolume", "show", sub)
	for _, want := range []string{"Received UUID: \t\t01020304-0506-4708-890a-0b0c0d0e0f10", "Flags: \t\t\treadonly", "Send transid: \t\t7"} {
		if !strings.Contains(show, want) {
			t.Errorf("btrfs subvolume show lacks %q:\n%s", want, show)
		}
	}
	if out := testenv.Run(t, "btrfs", "property", "get", "-ts", sub, "ro"); strings.TrimSpace(out) != "ro=true" {
		t.Errorf("the kernel does not take %s for read-only: %s", sub, out)
	}
	if err := os.WriteFile(filepath.Join(sub, "new"), nil, 0o644); err == nil {
		t.Error("wrote into a read-only received subvolume")
	}
	compareTree(t, sub, v1, nil)

	v2 := v1.Clone()
	if err := v2.Put("update-marker", fstree.NewFile(0o644, []byte("v2\n"), epoch)); err != nil {
		t.Fatal(err)
	}
	var stream bytes.Buffer
	u2 := sendstream.Options{Name: "v2", UUID: [16]byte{9, 9, 9}, CTransid: 8, ParentUUID: u1.UUID, ParentCTransid: u1.CTransid}
	if err := sendstream.WriteIncremental(&stream, v1, v2, u2); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "v2.stream")
	if err := os.WriteFile(f, stream.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, "btrfs", "receive", "-f", f, filepath.Join(dir, "roots"))
	compareTreeOpts(t, filepath.Join(dir, "roots/v2"), v2, nil, fstree.DiffOptions{IgnoreCtime: true})
	umount(t, dir)
	btrfsCheck(t, img)
	if bad := kernelComplaints(mark); len(bad) > 0 {
		t.Errorf("kernel complained:\n%s", strings.Join(bad, "\n"))
	}
}
