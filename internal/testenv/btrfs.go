package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// ScratchBtrfs makes an empty 1 GiB btrfs filesystem with mkfs.btrfs,
// loop-mounts it (noatime: reading it back must not move times) and
// unmounts it at cleanup. It needs root.
func ScratchBtrfs(t testing.TB) string {
	t.Helper()
	return ScratchBtrfsSize(t, 1<<30)
}

// ScratchBtrfsSize is ScratchBtrfs of size bytes (a sparse file: only
// what is written takes room on the host).
func ScratchBtrfsSize(t testing.TB, size int64) string {
	t.Helper()
	NeedRoot(t)
	NeedTools(t, "mkfs.btrfs", "btrfs", "mount", "umount", "losetup", "findmnt")
	dir := t.TempDir()
	img := filepath.Join(dir, "fs.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	Run(t, "mkfs.btrfs", "-q", img)
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	Run(t, "mount", "-t", "btrfs", "-o", "loop,noatime", img, mnt)
	t.Cleanup(func() {
		dev, _ := exec.Command("findmnt", "-n", "-o", "SOURCE", "--mountpoint", mnt).Output()
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
		if d := strings.TrimSpace(string(dev)); strings.HasPrefix(d, "/dev/loop") {
			exec.Command("losetup", "-d", d).Run()
		}
	})
	return mnt
}
