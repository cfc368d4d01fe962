// Package kmodtest gives tests Debian's real arm64 kernel and busybox,
// unpacked once into the user's cache with dpkg-deb. The .debs come from
// the project's apt cache, fetched there when missing; without network
// tests skip, and under CI they fail.
package kmodtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/cachedir"

	"github.com/mkimage/mkimage/internal/build/apt"
	"github.com/mkimage/mkimage/internal/testenv"
)

// Deb returns the newest cached .deb whose name starts with prefix.
func Deb(t testing.TB, prefix string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(cachedir.Root(), "apt", "debs", prefix+"*_arm64.deb"))
	if len(m) == 0 {
		// Fetch it as the builder would, so the test does not depend on
		// another test having run first.
		c := &apt.Cache{Dir: filepath.Join(cachedir.Root(), "apt"), Arch: "arm64"}
		var err error
		if prefix == "linux-image-" {
			_, err = c.KernelPackage(context.Background())
		} else {
			_, err = c.Fetch(context.Background(), strings.TrimSuffix(prefix, "_"))
		}
		if err != nil {
			testenv.Missing(t, "no "+prefix+"*_arm64.deb in "+filepath.Join(cachedir.Root(), "apt", "debs")+" and fetching failed: "+err.Error())
		}
		m, _ = filepath.Glob(filepath.Join(cachedir.Root(), "apt", "debs", prefix+"*_arm64.deb"))
		if len(m) == 0 {
			testenv.Missing(t, "no "+prefix+"*_arm64.deb after fetching")
		}
	}
	sort.Strings(m)
	return m[len(m)-1]
}

// Unpack extracts deb into the cache once and returns the directory.
func Unpack(t testing.TB, deb string) string {
	t.Helper()
	testenv.NeedTools(t, "dpkg-deb")
	dir := filepath.Join(cachedir.Root(), "test-debs", strings.TrimSuffix(filepath.Base(deb), ".deb"))
	if _, err := os.Stat(filepath.Join(dir, ".done")); err == nil {
		cachedir.Touch(dir)
		return dir
	}
	// Unpack beside the target and rename, so parallel test binaries
	// never see half a tree.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "unpack-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	if out, err := exec.Command("dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x %s: %v\n%s", deb, err, out)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".done"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, err2 := os.Stat(filepath.Join(dir, ".done")); err2 != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Kernel is Debian's unpacked arm64 kernel package.
type Kernel struct {
	Version    string // "6.1.0-56-arm64"
	Image      string // boot/vmlinuz-<version>, an arm64 Image
	ModulesDir string // lib/modules/<version>
}

// DebianKernel unpacks linux-image-*-arm64.
func DebianKernel(t testing.TB) Kernel {
	t.Helper()
	dir := Unpack(t, Deb(t, "linux-image-"))
	mods, _ := filepath.Glob(filepath.Join(dir, "lib", "modules", "*"))
	if len(mods) != 1 {
		t.Fatalf("%s: want one lib/modules/<version>, found %v", dir, mods)
	}
	v := filepath.Base(mods[0])
	return Kernel{Version: v, Image: filepath.Join(dir, "boot", "vmlinuz-"+v), ModulesDir: mods[0]}
}

// Busybox returns the path of Debian's static arm64 busybox binary.
func Busybox(t testing.TB) string {
	t.Helper()
	return filepath.Join(Unpack(t, Deb(t, "busybox-static_")), "bin", "busybox")
}
