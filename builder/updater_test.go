package builder

import (
	"bytes"
	"testing"
	"time"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/internal/build/cpio"
	"github.com/mkimage/mkimage/internal/fstree"
)

// TestAddUpdaterMergedUsr: on a root whose /lib is a symlink to usr/lib
// (Debian since bookworm), the systemd units go under usr/lib, where the
// enabling links' /lib/... targets resolve.
func TestAddUpdaterMergedUsr(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	initrd := fstree.New(t0)
	if _, err := initrd.MkdirAll("bbin", t0); err != nil {
		t.Fatal(err)
	}
	if err := initrd.Put(busyboxInInitrd, fstree.NewFile(0o755, []byte("busybox"), t0)); err != nil {
		t.Fatal(err)
	}
	var cp bytes.Buffer
	if err := cpio.Write(&cp, initrd); err != nil {
		t.Fatal(err)
	}
	root := fstree.New(t0)
	for _, d := range []string{"usr/lib/systemd", "usr/sbin"} {
		if _, err := root.MkdirAll(d, t0); err != nil {
			t.Fatal(err)
		}
	}
	if err := root.Put("usr/lib/systemd/systemd", fstree.NewFile(0o755, nil, t0)); err != nil {
		t.Fatal(err)
	}
	if err := root.Put("lib", fstree.NewSymlink("usr/lib", t0)); err != nil {
		t.Fatal(err)
	}
	b, err := boards.Get("qemu-virt")
	if err != nil {
		t.Fatal(err)
	}
	in := &inputs{board: b, root: root, initrd: cp.Bytes(), updateKeys: []byte("key\n")}
	if err := in.addUpdater(&Options{Epoch: t0, Rootfs: "debian"}); err != nil {
		t.Fatal(err)
	}
	for name := range systemdUnits {
		if _, ok := root.Lookup("usr/lib/systemd/system/" + name); !ok {
			t.Errorf("usr/lib/systemd/system/%s missing", name)
		}
	}
	if n, ok := root.Lookup("lib"); !ok || n.Type() != fstree.ModeSymlink {
		t.Errorf("/lib is no longer the symlink")
	}
}
