package kbuild_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/build/kbuild/kbuildtest"
)

// TestBuildQemuVirt builds the qemu-virt kernel from linux-source-6.1
// (long: skipped with -short; cached after the first run) and checks the
// output layout. The integrator boots it: kbuildtest.QemuVirtKernel(t).
func TestBuildQemuVirt(t *testing.T) {
	out := filepath.Join(t.TempDir(), "kernel")
	r := kbuildtest.Build(t, "qemu-virt", out)
	t.Logf("release %s, cached %v, key %s", r.Release, r.Cached, r.Key)

	img, err := os.ReadFile(filepath.Join(out, "Image"))
	if err != nil {
		t.Fatal(err)
	}
	// arm64 Image header: magic "ARM\x64" at offset 56.
	if len(img) < 64 || !bytes.Equal(img[56:60], []byte("ARM\x64")) {
		t.Errorf("Image has no arm64 header magic")
	}
	cfg, err := os.ReadFile(filepath.Join(out, "config"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CONFIG_VIRTIO_BLK=y", "CONFIG_VIRTIO_PCI=y", "CONFIG_BTRFS_FS=y", "CONFIG_SERIAL_AMBA_PL011_CONSOLE=y", "CONFIG_RD_XZ=y", "CONFIG_DEVTMPFS=y"} {
		if !bytes.Contains(cfg, []byte("\n"+want+"\n")) {
			t.Errorf("config lacks %s", want)
		}
	}
	rel, _ := os.ReadFile(filepath.Join(out, "release"))
	if strings.TrimSpace(string(rel)) != r.Release || !strings.HasPrefix(r.Release, "6.1") {
		t.Errorf("release file %q, result %q", rel, r.Release)
	}
	mdir := filepath.Join(out, "lib", "modules", r.Release)
	if _, err := os.Stat(filepath.Join(mdir, "modules.builtin")); err != nil {
		t.Errorf("modules.builtin: %v", err)
	}
	for _, link := range []string{"build", "source"} {
		if _, err := os.Lstat(filepath.Join(mdir, link)); err == nil {
			t.Errorf("%s link left in lib/modules", link)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "System.map")); err != nil {
		t.Error(err)
	}

	// An unchanged rebuild comes from the cache and replaces out.
	again := kbuildtest.Build(t, "qemu-virt", out)
	if !again.Cached || again.Key != r.Key {
		t.Errorf("second build: cached %v, key %s (first %s)", again.Cached, again.Key, r.Key)
	}
	img2, err := os.ReadFile(filepath.Join(out, "Image"))
	if err != nil || !bytes.Equal(img, img2) {
		t.Errorf("cached Image differs from the built one (%v)", err)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".kernel-*"))
	if len(left) > 0 {
		t.Errorf("temp dirs left: %v", left)
	}
}
