package e2e

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/testenv"
)

// TestBootOwnKernel: a vanilla kernel built by `mkimage kernel` from a
// source tarball (Debian's linux-source-6.1 stands in for kernel.org's)
// with the qemu-virt fragments goes into an image with --kernel DIR, and
// that image boots to the root's init through U-Boot. Its boot path is
// built in, so the initramfs loads no modules. The build is cached by
// source, config and toolchain: only the first run pays for it.
func TestBootOwnKernel(t *testing.T) {
	needQEMU(t)
	const src = "/usr/src/linux-source-6.1.tar.xz"
	testenv.NeedFile(t, src)
	testenv.NeedTools(t, "make", "aarch64-linux-gnu-gcc", "flex", "bison", "bc")
	dir := t.TempDir()
	kdir := filepath.Join(dir, "kernel")
	mustRun(t, "kernel", "--board", "qemu-virt", "--src", src, "-o", kdir)
	img := filepath.Join(dir, "own.img")
	mustRun(t, "--board", "qemu-virt", "--rootfs", "minimal", "--kernel", kdir, "-o", img, "-q",
		"--overlay", markerOverlay(t, `echo "OWN-KERNEL $(uname -r) $(cat /proc/sys/kernel/osrelease) apparmor=$(cat /sys/module/apparmor/parameters/enabled 2>&1)"`))
	log := qemu(t, img, "OWN-KERNEL")
	if !strings.Contains(log, "nodeinit: loaded 0 modules") && !strings.Contains(log, "no modules") {
		t.Logf("note: modules line not found (boot path built in?)")
	}
	if regexp.MustCompile(`OWN-KERNEL 6\.1\.0-[0-9]+-arm64`).MatchString(log) {
		t.Fatal("the image booted Debian's kernel, not the one built")
	}
	// The lxc fragment's AppArmor is on without a command line argument:
	// Debian's LXC needs it to start any container.
	if !strings.Contains(log, "apparmor=Y") {
		t.Errorf("AppArmor is not enabled in the built kernel:\n%s", log)
	}
}
