package rootdev

import (
	"os"
	"path/filepath"
	"testing"

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
		flags, _ := MountOptions(tt.rootflags)
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

// TestPart: a diskless root has no partition for first boot to grow.
func TestPart(t *testing.T) {
	if p := Part("http://:80/root.img", "/dev/loop0"); p != "" {
		t.Errorf("diskless root partition %q, want none", p)
	}
	if p := Part("LABEL=root", "/dev/mmcblk0p2"); p != "mmcblk0p2" {
		t.Errorf("card root partition %q", p)
	}
}
