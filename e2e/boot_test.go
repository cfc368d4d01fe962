package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/testenv"
)

// markerOverlay returns an overlay directory whose boot hook prints
// marker from the root's own init, so a test sees the chain reach it.
func markerOverlay(t *testing.T, script string) string {
	t.Helper()
	dir := t.TempDir()
	hook := filepath.Join(dir, "etc/boot.d")
	if err := os.MkdirAll(hook, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hook, "50-test"), []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// overlayFile is one file of a test overlay.
type overlayFile struct {
	data string
	mode os.FileMode
}

// systemdOverlay writes files into a new overlay directory and enables
// the systemd unit etc/systemd/system/UNIT (one of the files) in
// multi-user.target, as `systemctl enable` would.
func systemdOverlay(t *testing.T, unit string, files map[string]overlayFile) string {
	t.Helper()
	dir := t.TempDir()
	for name, f := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.data), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	wants := filepath.Join(dir, "etc/systemd/system/multi-user.target.wants")
	if err := os.MkdirAll(wants, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/systemd/system/"+unit, filepath.Join(wants, unit)); err != nil {
		t.Fatal(err)
	}
	return dir
}

func needQEMU(t *testing.T) {
	t.Helper()
	testenv.Short(t)
	testenv.NeedTools(t, "qemu-system-aarch64")
	testenv.NeedFile(t, "/usr/lib/u-boot/qemu_arm64/u-boot.bin")
}

// qemu boots img with `mkimage qemu` and returns the console log; it
// fails the test unless expect appears.
func qemu(t *testing.T, img, expect string, extra ...string) string {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "console.log")
	args := append([]string{"qemu", img, "--expect", expect, "--timeout", "4m", "--log", logPath, "-q"}, extra...)
	_, errs, err := run(t, nil, args...)
	log, _ := os.ReadFile(logPath)
	if err != nil {
		t.Fatalf("mkimage qemu: %v\n%s\nconsole:\n%s", err, errs, tail(string(log), 60))
	}
	return string(log)
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestBootQemuVirt: the full chain U-Boot → extlinux.conf on FAT → kernel
// → our initramfs → btrfs root written by the native writer → the root's
// init, which prints a marker the test placed in the root.
func TestBootQemuVirt(t *testing.T) {
	needQEMU(t)
	img := filepath.Join(t.TempDir(), "virt.img")
	mustRun(t, "--board", "qemu-virt", "--rootfs", "minimal", "-o", img, "-q", "--overlay", markerOverlay(t, `echo "E2E-MARKER root=$(cat /etc/hostname) $(grep -o 'subvol=[^ ,]*' /proc/self/mountinfo | head -1)"`))
	log := qemu(t, img, "E2E-MARKER")
	for _, want := range []string{
		"Retrieving file: /extlinux/extlinux.conf", // U-Boot read our FAT
		// qemu-virt loads no virtio driver by name: coldplug finds
		// the disk's and the network's by modalias.
		"nodeinit: coldplug: loaded virtio_mmio for of:Nvirtio_mmioT(null)Cvirtio,mmio",
		"nodeinit: coldplug: loaded virtio_blk for virtio:d00000002v",
		"nodeinit: coldplug: loaded virtio_net for virtio:d00000001v",
		"nodeinit: mounted", // our initramfs found the btrfs root
		// The root's init, in the default subvolume, after first boot
		// (no cluster config: hostname from QEMU's default MAC).
		"E2E-MARKER root=node-525400123456 subvol=/@",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("console lacks %q", want)
		}
	}
}

// TestBootOdroidUnderVirt: a hardware board's image boots its own kernel,
// initramfs and root under QEMU virt (QEMU's device tree, virtio disk).
func TestBootOdroidUnderVirt(t *testing.T) {
	needQEMU(t)
	img := filepath.Join(t.TempDir(), "c2.img")
	mustRun(t, "--board", "odroid-c2", "--rootfs", "minimal", "-o", img, "-q", "--overlay", markerOverlay(t, `echo "E2E-MARKER-C2 $(uname -m)"`))
	log := qemu(t, img, "E2E-MARKER-C2 aarch64")
	if !strings.Contains(log, "nodeinit: switching root") {
		t.Errorf("console lacks nodeinit's switch_root line")
	}
}

// TestBootZeroedRootRescues: with the root partition zeroed, nodeinit
// says why and starts the rescue shell instead of hanging or panicking.
func TestBootZeroedRootRescues(t *testing.T) {
	needQEMU(t)
	img := filepath.Join(t.TempDir(), "broken.img")
	mustRun(t, "--board", "qemu-virt", "--rootfs", "minimal", "-o", img, "-q")
	d := partitions(t, img)
	p2 := d.PartitionTable.Partitions[1]
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	zero := make([]byte, 1<<20)
	for off := int64(0); off < 64<<20; off += int64(len(zero)) {
		f.WriteAt(zero, p2.Start*512+off)
	}
	f.Close()
	log := qemu(t, img, "nodeinit: rescue shell", "--timeout", "3m")
	if !strings.Contains(log, "root LABEL=root") {
		t.Errorf("rescue without naming the missing root:\n%s", tail(log, 30))
	}
	if strings.Contains(log, "Kernel panic") {
		t.Error("kernel panicked")
	}
}
