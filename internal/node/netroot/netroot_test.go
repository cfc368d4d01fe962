package netroot

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/bmap"
	"github.com/mkimage/mkimage/internal/build/btrfs"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/node/netfetch/fetchtest"
	"github.com/mkimage/mkimage/internal/testenv"
)

// rootImage writes a btrfs root like mkimage netboot's root.img.
func rootImage(t *testing.T, dir string) string {
	t.Helper()
	ep := time.Unix(0, 0)
	tr := fstree.New(ep)
	tr.MkdirAll("sbin", ep)
	tr.Put("sbin/init", fstree.NewFile(0o755, []byte("#!/bin/sh\necho diskless root\n"), ep))
	o := btrfs.Options{Label: "root", RootSubvolume: "@", Time: ep, Headroom: 64 << 20}
	p := filepath.Join(dir, "root.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := btrfs.Write(f, tr, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(r.Size); err != nil {
		t.Fatal(err)
	}
	var ext []bmap.Extent
	for _, e := range r.Mapped {
		ext = append(ext, bmap.Extent{Off: e.Offset, Len: e.Length})
	}
	return fetchtest.WriteMap(t, p, ext)
}

// TestMount fetches a btrfs root over HTTP from the project's server on
// loopback into a tmpfs, loop-mounts it and reads the root's init.
func TestCheckRAM(t *testing.T) {
	mi := filepath.Join(t.TempDir(), "meminfo")
	os.WriteFile(mi, []byte("MemTotal:        1000000 kB\nMemFree:          900000 kB\nMemAvailable:     524288 kB\n"), 0o644)
	if err := checkRAM(mi, 400<<20); err != nil {
		t.Errorf("400 MiB in 512 MiB available: %v", err)
	}
	if err := checkRAM(mi, 480<<20); err == nil || !strings.Contains(err.Error(), "480 MiB of data, this node has 512 MiB of RAM available") {
		t.Errorf("480 MiB in 512 MiB available: %v", err)
	}
	if err := checkRAM(filepath.Join(t.TempDir(), "none"), 1<<40); err != nil {
		t.Errorf("no meminfo: %v", err)
	}
}

func TestMount(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedFile(t, "/dev/loop-control")
	srvDir := t.TempDir()
	sum := rootImage(t, srvDir)
	ap := fetchtest.Serve(t, srvDir)

	work := t.TempDir()
	o := Options{
		URL: fetchtest.URL(ap, "root.img"), SHA256: sum, Server: ap.Addr(), MountFlags: unix.MS_NOATIME,
		Dir: filepath.Join(work, "ram"), Target: filepath.Join(work, "newroot"), Log: t.Logf,
	}
	dev, err := Mount(context.Background(), o)
	defer unix.Unmount(o.Dir, unix.MNT_DETACH)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(o.Target, 0)
	got, err := os.ReadFile(filepath.Join(o.Target, "sbin/init"))
	if err != nil || !bytes.Contains(got, []byte("diskless root")) {
		t.Fatalf("root's init: %q, %v", got, err)
	}
	// The root is writable (in RAM) and the image file stays sparse.
	if err := os.WriteFile(filepath.Join(o.Target, "scratch"), []byte("x"), 0o644); err != nil {
		t.Errorf("root not writable: %v", err)
	}
	var st unix.Stat_t
	unix.Stat(filepath.Join(o.Dir, "root.img"), &st)
	if st.Blocks*512 >= st.Size {
		t.Errorf("image uses %d bytes of RAM for %d bytes: not sparse", st.Blocks*512, st.Size)
	}
	if !strings.HasPrefix(dev, "/dev/loop") {
		t.Errorf("device %q", dev)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(o.Target, &sfs); err != nil || sfs.Flags&unix.ST_NOATIME == 0 {
		t.Errorf("mount flags %#x, %v: MS_NOATIME not applied", sfs.Flags, err)
	}

	// A wrong sha256 mounts nothing.
	o2 := o
	o2.SHA256 = strings.Repeat("2", 64)
	o2.Dir, o2.Target = filepath.Join(work, "ram2"), filepath.Join(work, "newroot2")
	_, err = Mount(context.Background(), o2)
	unix.Unmount(o2.Dir, unix.MNT_DETACH)
	if err == nil || !strings.Contains(err.Error(), "image sha256 is "+sum) {
		t.Errorf("wrong sum: %v", err)
	}
}
