package initramfs_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/initramfs"
	"github.com/mkimage/mkimage/internal/build/kmod/kmodtest"
	"github.com/mkimage/mkimage/internal/build/qemu"
	"github.com/mkimage/mkimage/internal/testenv"
)

const marker = "ROOT-INIT-REACHED"

// rootDisk makes a btrfs image whose /sbin/init is a busybox script that
// prints marker and powers off.
func rootDisk(t *testing.T, label string) string {
	t.Helper()
	testenv.NeedTools(t, "mkfs.btrfs")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	for _, d := range []string{"bin", "sbin", "dev", "proc", "sys", "run"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile(kmodtest.Busybox(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/busybox sh\n/bin/busybox echo " + marker + " pid=$$ fs=$(/bin/busybox stat -f -c %t /)\n/bin/busybox poweroff -f\n"
	if err := os.WriteFile(filepath.Join(root, "sbin", "init"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "root.img")
	if err := os.Truncate(createFile(t, img), 128<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.btrfs", "-q", "-L", label, "--rootdir", root, img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.btrfs: %v\n%s", err, out)
	}
	return img
}

func createFile(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p
}

// boot runs Debian's kernel with the initramfs and disk, and waits for
// want on the console.
func boot(t *testing.T, initrd, disk, cmdline, want string) (*qemu.VM, string, error) {
	t.Helper()
	k := kmodtest.DebianKernel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	var console strings.Builder
	vm, err := qemu.Start(ctx, qemu.Options{
		Kernel: k.Image, Initrd: initrd, Disk: disk,
		Append:  "console=ttyAMA0 panic=-1 " + cmdline,
		Console: &console,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vm.Kill)
	line, err := vm.Console.Expect(ctx, want)
	return vm, line, err
}

// TestBoot boots Debian's arm64 kernel with the initramfs: nodeinit loads
// virtio and btrfs modules, finds the root by label, mounts it and
// switches into its init.
func TestBoot(t *testing.T) {
	testenv.Short(t)
	testenv.NeedTools(t, "qemu-system-aarch64")
	r := build(t, initramfs.Options{})
	disk := rootDisk(t, "root")
	tests := []struct {
		name    string
		cmdline string
	}{
		{"label", "root=LABEL=root"},
		{"only btrfs, rootflags", "rootflags=noatime,compress=zstd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			vm, line, err := boot(t, r.Path, disk, tt.cmdline, marker)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(line, "pid=1 fs=9123683e") {
				t.Errorf("root init line %q: want pid=1 on btrfs", line)
			}
			for _, want := range []string{"nodeinit: loaded module btrfs", "nodeinit: mounted /dev/vda on /newroot (btrfs)", "nodeinit: switching root"} {
				if !strings.Contains(vm.Console.String(), want) {
					t.Errorf("console lacks %q", want)
				}
			}
			t.Logf("QEMU start to root init: %v", time.Since(start).Round(time.Millisecond))
			if err := vm.Wait(); err != nil {
				t.Errorf("poweroff: %v", err)
			}
		})
	}
}

// TestBootRescue: without a usable root nodeinit says why and starts the
// rescue shell, well before any timeout or kernel panic.
func TestBootRescue(t *testing.T) {
	testenv.Short(t)
	testenv.NeedTools(t, "qemu-system-aarch64")
	r := build(t, initramfs.Options{})
	zero := filepath.Join(t.TempDir(), "zero.img")
	if err := os.Truncate(createFile(t, zero), 64<<20); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, disk, cmdline, why string
	}{
		{"zeroed disk", zero, "root=LABEL=root nodeinit.timeout=3", "root LABEL=root not found after 3s (block devices: vda)"},
		{"no init in root", rootDisk(t, "root"), "root=LABEL=root init=/sbin/nothing", "init /sbin/nothing in the root"},
		{"bad root spec", zero, "root=nfs:10.0.0.1:/x", "unsupported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vm, line, err := boot(t, r.Path, tt.disk, tt.cmdline, "nodeinit: rescue shell")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(line, tt.why) {
				t.Errorf("rescue line %q does not say %q", line, tt.why)
			}
			if strings.Contains(vm.Console.String(), "Kernel panic") {
				t.Error("kernel panicked")
			}
			// The shell really runs on the console.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := vm.Send("echo RESCUE-$((6*7))\r"); err != nil {
				t.Fatal(err)
			}
			if _, err := vm.Console.Expect(ctx, "RESCUE-42"); err != nil {
				t.Errorf("rescue shell did not run a command: %v", err)
			}
		})
	}
}
