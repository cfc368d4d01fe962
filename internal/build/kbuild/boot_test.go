package kbuild_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/build/kmod/kmodtest"

	"github.com/mkimage/mkimage/internal/build/kbuild/kbuildtest"
	"github.com/mkimage/mkimage/internal/testenv"
)

// TestBootQemuVirt boots the built qemu-virt kernel in QEMU with a tiny
// xz initramfs (Debian's static arm64 busybox as /init) and a btrfs
// virtio disk: the boot path the fragments promise, without modules.
func TestBootQemuVirt(t *testing.T) {
	testenv.Short(t)
	testenv.NeedTools(t, "qemu-system-aarch64", "xz", "mkfs.btrfs", "dpkg-deb")
	debs := []string{kmodtest.Deb(t, "busybox-static_")}
	kernel := kbuildtest.QemuVirtKernel(t)
	dir := t.TempDir()

	// Initramfs: busybox, /init, and /dev/console so the kernel can give
	// init a console before devtmpfs is mounted.
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], filepath.Join(dir, "bb")).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, out)
	}
	busybox, err := os.ReadFile(filepath.Join(dir, "bb", "bin", "busybox"))
	if err != nil {
		t.Fatal(err)
	}
	initScript := `#!/bin/busybox sh
bb=/bin/busybox
$bb mkdir -p /proc /sys /dev /mnt
$bb mount -t proc proc /proc
$bb mount -t sysfs sys /sys
$bb mount -t devtmpfs dev /dev
echo "KERNEL $($bb uname -r)"
$bb grep -qw btrfs /proc/filesystems && echo BTRFS-REGISTERED
$bb mount -t btrfs /dev/vda /mnt && $bb cat /mnt/hello
$bb unshare -n -u -i -p -m -f $bb true && echo NAMESPACES-OK
[ -e /proc/sys/net/ipv4/ip_forward ] && echo INET-OK
$bb poweroff -f
`
	var cpio bytes.Buffer
	w := newc{w: &cpio}
	w.add("bin", 0o40755, 0, 0, nil)
	w.add("dev", 0o40755, 0, 0, nil)
	w.add("dev/console", 0o20600, 5, 1, nil)
	w.add("bin/busybox", 0o100755, 0, 0, busybox)
	w.add("init", 0o100755, 0, 0, []byte(initScript))
	w.add("TRAILER!!!", 0, 0, 0, nil)
	initrd := filepath.Join(dir, "initrd.cpio.xz")
	// The kernel's xz decoder wants CRC32 (or no) checks.
	xz := exec.Command("xz", "--check=crc32", "--lzma2=dict=1MiB", "-c")
	xz.Stdin = &cpio
	xzOut, err := xz.Output()
	if err != nil {
		t.Fatalf("xz: %v", err)
	}
	os.WriteFile(initrd, xzOut, 0o644)

	// A btrfs disk with one file.
	root := filepath.Join(dir, "root")
	os.MkdirAll(root, 0o755)
	os.WriteFile(filepath.Join(root, "hello"), []byte("BTRFS-MOUNTED\n"), 0o644)
	disk := filepath.Join(dir, "disk.img")
	f, _ := os.Create(disk)
	f.Truncate(256 << 20)
	f.Close()
	if out, err := exec.Command("mkfs.btrfs", "-q", "--rootdir", root, disk).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.btrfs: %v\n%s", err, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	q := exec.CommandContext(ctx, "qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a53", "-m", "512", "-smp", "2",
		"-nographic", "-no-reboot", "-monitor", "none",
		"-kernel", filepath.Join(kernel, "Image"), "-initrd", initrd,
		"-append", "console=ttyAMA0 panic=-1",
		"-drive", "file="+disk+",format=raw,if=virtio")
	var console bytes.Buffer
	q.Stdout, q.Stderr = &console, &console
	q.Stdin = strings.NewReader("")
	err = q.Run()
	out := console.String()
	t.Logf("qemu ran %s (%v)", time.Since(start).Round(time.Second), err)
	for _, want := range []string{"KERNEL 6.1", "BTRFS-REGISTERED", "BTRFS-MOUNTED", "NAMESPACES-OK", "INET-OK"} {
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	n := 12
	if t.Failed() {
		n = 60
	}
	t.Logf("console (last lines):\n%s", lastN(out, n))
}

func lastN(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// newc writes the cpio "newc" format the kernel unpacks, device nodes
// included.
type newc struct {
	w   io.Writer
	ino int
}

func (c *newc) add(name string, mode uint32, rmaj, rmin int, data []byte) {
	c.ino++
	fmt.Fprintf(c.w, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rmaj, rmin, len(name)+1, 0)
	io.WriteString(c.w, name+"\x00")
	c.w.Write(make([]byte, (4-(110+len(name)+1)%4)%4))
	c.w.Write(data)
	c.w.Write(make([]byte, (4-len(data)%4)%4))
}
