package btrfsctl

import (
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/testenv"
)

func TestSubvolumes(t *testing.T) {
	mnt := testenv.ScratchBtrfs(t)
	if !Is(mnt) {
		t.Fatalf("Is(%s) = false", mnt)
	}
	a := filepath.Join(mnt, "a")
	if err := Create(a); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a, "f"), []byte("v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	ro := filepath.Join(mnt, "ro")
	if err := Snapshot(a, ro, true); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ro, "g"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write into a read-only snapshot: %v, want EROFS", err)
	}
	rw := filepath.Join(mnt, "rw")
	if err := Snapshot(ro, rw, false); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rw, "f"), []byte("v2"), 0o644); err != nil {
		t.Errorf("write into a writable snapshot: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(ro, "f")); string(b) != "v1" {
		t.Errorf("the read-only snapshot changed: %q", b)
	}

	ia, err := Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	iro, err := Stat(ro)
	if err != nil {
		t.Fatal(err)
	}
	if ia.ReadOnly || !iro.ReadOnly || iro.Name != "ro" || iro.ParentID != 5 || iro.UUID == ia.UUID || iro.Received() || iro.ParentUUID != ia.UUID || ia.ParentUUID != [16]byte{} {
		t.Errorf("Stat: a %+v, ro %+v", ia, iro)
	}
	// Real btrfs send and receive: the received copy carries the sent
	// subvolume's UUID as its received UUID.
	recv := filepath.Join(mnt, "recv")
	if err := os.Mkdir(recv, 0o755); err != nil {
		t.Fatal(err)
	}
	stream := filepath.Join(t.TempDir(), "ro.stream")
	testenv.Run(t, "btrfs", "send", "-q", "-f", stream, ro)
	testenv.Run(t, "btrfs", "receive", "-f", stream, recv)
	ir, err := Stat(filepath.Join(recv, "ro"))
	if err != nil {
		t.Fatal(err)
	}
	if !ir.Received() || ir.ReceivedUUID != iro.UUID || !ir.ReadOnly || ir.STransid != iro.CTransid {
		t.Errorf("received: %+v, sent %+v", ir, iro)
	}
	show := testenv.Run(t, "btrfs", "subvolume", "show", filepath.Join(recv, "ro"))
	if u := hex.EncodeToString(ir.ReceivedUUID[:]); !strings.Contains(strings.ReplaceAll(show, "-", ""), u) {
		t.Errorf("btrfs subvolume show does not name received UUID %s:\n%s", u, show)
	}

	for _, p := range []string{filepath.Join(a, "f"), recv, filepath.Join(mnt, "missing")} {
		if _, err := Stat(p); err == nil {
			t.Errorf("Stat(%s): no error for a path that is not a subvolume", p)
		}
	}
	for _, p := range []string{filepath.Join(recv, "ro"), ro, rw} {
		if err := Delete(p); err != nil {
			t.Errorf("Delete(%s): %v", p, err)
		}
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there after Delete: %v", p, err)
		}
	}
	if err := Delete(filepath.Join(a, "f")); err == nil {
		t.Error("Delete of a plain file: no error")
	}
	if err := Grow(mnt); err != nil {
		t.Error(err)
	}
	if out, err := exec.Command("btrfs", "subvolume", "list", mnt).CombinedOutput(); err != nil || strings.Count(string(out), "\n") != 1 {
		t.Errorf("subvolumes left: %v\n%s", err, out)
	}
}
