package deb_test

import (
	"archive/tar"
	"io"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/build/deb"
	"github.com/mkimage/mkimage/internal/build/kmod/kmodtest"
)

// TestKernelPackage reads Debian's real kernel package (an external test
// package: kmodtest fetches through internal/build/apt, which imports deb).
func TestKernelPackage(t *testing.T) {
	kernelDeb := kmodtest.Deb(t, "linux-image-")
	p, err := deb.Open(kernelDeb)
	if err != nil {
		t.Fatal(err)
	}
	if c := p.Control(); !strings.HasPrefix(c.Package, "linux-image-6.1.0-") || !strings.HasSuffix(c.Package, "-arm64") || c.Architecture != "arm64" {
		t.Errorf("control = %+v", c)
	}
	want := map[string]bool{"./boot/vmlinuz-": false, "/amlogic/meson-gxbb-odroidc2.dtb": false, "/kernel/fs/btrfs/btrfs.ko": false}
	var image int64
	err = p.Data(func(h *tar.Header, r io.Reader) error {
		for k := range want {
			if strings.Contains(h.Name, k) {
				want[k] = true
			}
		}
		if strings.HasPrefix(h.Name, "./boot/vmlinuz-") {
			n, err := io.Copy(io.Discard, r)
			image = n
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("no entry matching %q", k)
		}
	}
	if image < 1<<20 {
		t.Errorf("vmlinuz is %d bytes", image)
	}
}
