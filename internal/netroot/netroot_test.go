package netroot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/bmap"
	"github.com/mkimage/mkimage/internal/btrfs"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/netserve"
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
	f, err := os.Create(filepath.Join(dir, "root.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := btrfs.Write(f, tr, o)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(r.Size)
	var ext []bmap.Extent
	for _, e := range r.Mapped {
		ext = append(ext, bmap.Extent{Off: e.Offset, Len: e.Length})
	}
	m, err := bmap.Create(f, r.Size, ext)
	if err != nil {
		t.Fatal(err)
	}
	m.WriteFile(filepath.Join(dir, "root.img.bmap"))
	data, _ := os.ReadFile(filepath.Join(dir, "root.img"))
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// TestMount fetches a btrfs root over HTTP from the project's server on
// loopback into a tmpfs, loop-mounts it and reads the root's init.
func TestMount(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedFile(t, "/dev/loop-control")
	srvDir := t.TempDir()
	sum := rootImage(t, srvDir)
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		(&netserve.HTTP{Files: netserve.Files{Dir: srvDir}, Log: log.New(io.Discard, "", 0)}).Serve(ctx, l)
		close(done)
	}()
	defer func() { cancel(); <-done }()
	ap := netip.MustParseAddrPort(l.Addr().String())

	work := t.TempDir()
	o := Options{
		URL: "http://:" + strings.TrimPrefix(l.Addr().String(), "127.0.0.1:") + "/root.img", SHA256: sum, Server: ap.Addr(),
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
