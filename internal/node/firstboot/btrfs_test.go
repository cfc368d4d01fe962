package firstboot

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/node/btrfsctl"
	"github.com/mkimage/mkimage/internal/testenv"
)

// TestBtrfsIoctls grows a real mounted btrfs after its loop device got
// bigger and makes subvolumes, with the ioctls nodeinit uses; btrfs-progs
// only judge the result.
func TestBtrfsIoctls(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "mkfs.btrfs", "losetup", "btrfs")
	dir := t.TempDir()
	img := filepath.Join(dir, "root.img")
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Truncate(img, 128<<20)
	run("mkfs.btrfs", "-q", img)
	loop := strings.TrimSpace(run("losetup", "-f", "--show", img))
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	if err := unix.Mount(loop, mnt, "btrfs", 0, ""); err != nil {
		testenv.Missing(t, "cannot mount btrfs here: "+err.Error())
	}
	t.Cleanup(func() { unix.Unmount(mnt, 0) })

	total := func() uint64 {
		var st unix.Statfs_t
		if err := unix.Statfs(mnt, &st); err != nil {
			t.Fatal(err)
		}
		return st.Blocks * uint64(st.Bsize)
	}
	before := total()
	os.Truncate(img, 384<<20)
	run("losetup", "-c", loop) // the kernel sees the bigger "disk"
	if !btrfsctl.Is(mnt) {
		t.Fatal("btrfsctl.Is false on a btrfs mount")
	}
	for i := 0; i < 2; i++ { // the second time is a no-op
		if err := btrfsctl.Grow(mnt); err != nil {
			t.Fatal(err)
		}
	}
	if after := total(); after < before+200<<20 {
		t.Errorf("size %d -> %d, want it grown by about 256 MiB", before, after)
	}
	if out := run("btrfs", "filesystem", "show", "--raw", mnt); !strings.Contains(out, "size 402653184 ") {
		t.Errorf("btrfs filesystem show: device size not 384 MiB:\n%s", out)
	}
	for i := 0; i < 2; i++ {
		for _, d := range []string{".snapshots", "var/lib/lxc"} {
			created, err := ensureSubvolume(mnt, d)
			if err != nil {
				t.Fatal(err)
			}
			if created != (i == 0) {
				t.Errorf("%s: created=%v on run %d", d, created, i+1)
			}
		}
	}
	list := run("btrfs", "subvolume", "list", mnt)
	for _, want := range []string{"path .snapshots\n", "path var/lib/lxc\n"} {
		if !strings.Contains(list, want) {
			t.Errorf("btrfs subvolume list lacks %q:\n%s", want, list)
		}
	}
	if err := btrfsctl.Grow(dir); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("resize on a non-btrfs dir: %v", err)
	}
}
