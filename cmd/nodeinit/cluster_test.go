package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/testenv"
)

// TestRemount mounts a tmpfs as rootflags say and checks that first boot
// gets a writable root and the root's init gets it back as it was.
func TestRemount(t *testing.T) {
	testenv.NeedRoot(t)
	for _, tt := range []struct {
		rootflags string
		wasRO     bool
	}{
		{"ro,noatime", true},
		{"ro", true},
		{"noatime", false},
		{"", false},
	} {
		dir := t.TempDir()
		flags, _ := mountOptions(tt.rootflags)
		if err := unix.Mount("tmpfs", dir, "tmpfs", flags, "size=1m"); err != nil {
			t.Fatalf("mount tmpfs: %v", err)
		}
		defer unix.Unmount(dir, unix.MNT_DETACH)
		ro, err := remountRW(dir, tt.rootflags)
		if err != nil || ro != tt.wasRO {
			t.Fatalf("%q: remountRW = %v, %v; want %v", tt.rootflags, ro, err, tt.wasRO)
		}
		if err := os.WriteFile(filepath.Join(dir, "firstboot.json"), []byte("{}"), 0o644); err != nil {
			t.Errorf("%q: root not writable for first boot: %v", tt.rootflags, err)
		}
		if !ro {
			continue
		}
		if err := remountRO(dir, tt.rootflags); err != nil {
			t.Fatalf("%q: remountRO: %v", tt.rootflags, err)
		}
		var sfs unix.Statfs_t
		unix.Statfs(dir, &sfs)
		if sfs.Flags&unix.ST_RDONLY == 0 {
			t.Errorf("%q: root left read-write", tt.rootflags)
		}
		if tt.rootflags == "ro,noatime" && sfs.Flags&unix.ST_NOATIME == 0 {
			t.Errorf("%q: noatime lost on the remount", tt.rootflags)
		}
	}
}

// TestWaitForNIC: lo alone is not enough; a NIC registered late is
// waited for, up to the limit.
func TestWaitForNIC(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "lo"), 0o755)
	start := time.Now()
	if waitForNIC(dir, 300*time.Millisecond) {
		t.Error("lo alone counted as a NIC")
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("returned after %v with only lo, want the full 300ms", d)
	}
	time.AfterFunc(200*time.Millisecond, func() { os.Mkdir(filepath.Join(dir, "eth0"), 0o755) })
	start = time.Now()
	if !waitForNIC(dir, 5*time.Second) {
		t.Error("eth0 not seen")
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 2*time.Second {
		t.Errorf("returned after %v, want soon after eth0 appeared at 200ms", d)
	}
}
