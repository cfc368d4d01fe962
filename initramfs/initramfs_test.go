package initramfs_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/initramfs"
	"github.com/mkimage/mkimage/internal/build/kmod/kmodtest"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/modalias"
	"github.com/mkimage/mkimage/internal/testenv"
)

var epoch = time.Unix(1700000000, 0)

// build builds the qemu-virt initramfs with Debian's kernel modules into
// the user's cache (so repeated runs reuse it).
func build(t *testing.T, o initramfs.Options) *initramfs.Result {
	t.Helper()
	testenv.NeedTools(t, "go")
	k := kmodtest.DebianKernel(t)
	if o.Board == nil {
		b, err := boards.Get("qemu-virt")
		if err != nil {
			t.Fatal(err)
		}
		o.Board = b
	}
	o.ModulesDir = k.ModulesDir
	if o.Epoch.IsZero() {
		o.Epoch = epoch
	}
	var log bytes.Buffer
	o.Log = &log
	r, err := initramfs.Build(context.Background(), o)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	return r
}

// TestBuild checks the archive with the real tools: xz -t accepts it,
// its check is CRC32 (all the kernel's decoder takes), and cpio lists
// /init, nodeinit, the modules and the load list in dependency order.
func TestBuild(t *testing.T) {
	testenv.Short(t)
	testenv.NeedTools(t, "xz", "cpio")
	r := build(t, initramfs.Options{})
	k := kmodtest.DebianKernel(t)
	if out, err := exec.Command("xz", "-t", r.Path).CombinedOutput(); err != nil {
		t.Fatalf("xz -t: %v\n%s", err, out)
	}
	info, err := exec.Command("xz", "--robot", "-lv", r.Path).Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(info), "\tCRC32\t") || strings.Contains(string(info), "CRC64") {
		t.Errorf("xz check is not CRC32:\n%s", info)
	}
	list := cpioList(t, r.Path, "-tv")
	for _, want := range []string{
		" init -> bbin/nodeinit\n",
		" bbin/bb\n",
		" bbin/gosh -> bb\n",
		"crw-------   1 root     root       5,   1 Nov 14  2023 dev/console\n",
		" lib/modules/" + k.Version + "/kernel/fs/btrfs/btrfs.ko\n",
		" lib/modules/" + k.Version + "/kernel/drivers/block/virtio_blk.ko\n",
		" etc/nodeinit/modules\n",
		" etc/nodeinit/coldplug\n",
	} {
		if !strings.Contains(list, want) {
			t.Errorf("cpio -tv lacks %q", want)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		if !strings.Contains(line, " root     root ") || !strings.Contains(line, "Nov 14  2023") {
			t.Errorf("entry not owned by root at the epoch: %s", line)
			break
		}
	}
	order := extract(t, r.Path, "etc/nodeinit/modules")
	crc, lib, btrfs := strings.Index(order, "/crc32c_generic.ko"), strings.Index(order, "/libcrc32c.ko"), strings.Index(order, "/btrfs.ko")
	if crc < 0 || lib < 0 || btrfs < 0 || !(crc < lib && lib < btrfs) {
		t.Errorf("load order wants crc32c_generic, libcrc32c, btrfs in that order:\n%s", order)
	}
	if got := strings.Count(order, "\n"); got != len(r.Modules) {
		t.Errorf("load list has %d lines, result %d modules", got, len(r.Modules))
	}

	// qemu-virt's virtio drivers are carried for coldplug, not loaded
	// by name: the index gives each its aliases and load order.
	if strings.Contains(order, "virtio") {
		t.Errorf("load list names a virtio driver:\n%s", order)
	}
	idx, err := modalias.Parse(strings.NewReader(extract(t, r.Path, initramfs.ColdplugIndex)))
	if err != nil {
		t.Fatal(err)
	}
	if got := idx.Lookup("virtio:d00000002v554D4551"); len(got) != 1 || got[0] != "virtio_blk" {
		t.Errorf("index: virtio disk matches %v, want virtio_blk", got)
	}
	if m, ok := idx.Module("virtio_net"); !ok || m.Load[len(m.Load)-1] != "virtio_net" || len(m.Load) < 2 || !strings.HasSuffix(m.Path, "/virtio_net.ko") {
		t.Errorf("index: virtio_net record %+v: want its dependencies first, then itself", m)
	}
	if len(r.Coldplug) != len(idx.Modules) {
		t.Errorf("result names %d coldplug modules, index %d", len(r.Coldplug), len(idx.Modules))
	}

	// Unchanged inputs: served from the cache, same bytes.
	again := build(t, initramfs.Options{})
	if !again.Cached || again.SHA256 != r.SHA256 {
		t.Errorf("second build: cached %v, sha %s, want cached %s", again.Cached, again.SHA256, r.SHA256)
	}
	// Baked files change the archive and land in it.
	files := fstree.New(epoch)
	files.MkdirAll("etc/nodeinit", epoch)
	files.Put(initramfs.CmdlineFile, fstree.NewFile(0o644, []byte("nodeinit.timeout=5\n"), epoch))
	baked := build(t, initramfs.Options{Files: files})
	if baked.SHA256 == r.SHA256 {
		t.Error("baked files did not change the initramfs")
	}
	if got := extract(t, baked.Path, initramfs.CmdlineFile); got != "nodeinit.timeout=5\n" {
		t.Errorf("baked %s = %q", initramfs.CmdlineFile, got)
	}
	// The coldplug set is part of the cache key; without one there is
	// no index.
	more := build(t, initramfs.Options{Coldplug: []string{"virtio_blk", "fixed"}})
	if more.SHA256 == r.SHA256 || len(more.Coldplug) != 2 {
		t.Errorf("coldplug virtio_blk, fixed: sha %s, modules %v", more.SHA256, more.Coldplug)
	}
	none := build(t, initramfs.Options{Coldplug: []string{}})
	if strings.Contains(cpioList(t, none.Path, "-t"), "etc/nodeinit/coldplug") || none.Coldplug != nil {
		t.Errorf("no coldplug modules, yet an index (%v)", none.Coldplug)
	}
	// A module loaded only where the kernel has it as a file: Debian's
	// nft_meta_bridge is loaded, a name it has not is skipped.
	opt := build(t, initramfs.Options{ModulesIfModular: []string{"nft_meta_bridge", "no_such_module"}})
	if got := strings.Join(opt.Modules, " "); !strings.HasSuffix(got, " nft_meta_bridge") || strings.Contains(got, "no_such_module") {
		t.Errorf("modules if modular: load list %s", got)
	}
}

// TestReproducible builds everything twice from empty caches, u-root
// busybox included: the two archives must be identical.
func TestReproducible(t *testing.T) {
	testenv.Short(t)
	if os.Getenv("MKIMAGE_SLOW") == "" && os.Getenv("CI") == "" {
		t.Skip("two cold busybox builds (~2 min); set MKIMAGE_SLOW=1")
	}
	a := build(t, initramfs.Options{CacheDir: t.TempDir()})
	b := build(t, initramfs.Options{CacheDir: t.TempDir()})
	if a.Cached || b.Cached || a.SHA256 != b.SHA256 {
		t.Errorf("two cold builds differ: %s (cached %v) vs %s (cached %v)", a.SHA256, a.Cached, b.SHA256, b.Cached)
	}
}

func TestErrors(t *testing.T) {
	k := kmodtest.DebianKernel(t)
	cache := t.TempDir()
	tests := []struct {
		name string
		o    initramfs.Options
		want string
	}{
		{"unknown module", initramfs.Options{Modules: []string{"virtio_blk", "no_such_driver"}, ModulesDir: k.ModulesDir}, "no_such_driver"},
		{"unknown coldplug module", initramfs.Options{Coldplug: []string{"virtio_blk", "no_such_driver"}, ModulesDir: k.ModulesDir}, "coldplug: module no_such_driver"},
		{"no modules dir", initramfs.Options{Modules: []string{"btrfs"}}, "no kernel modules directory"},
		{"missing modules dir", initramfs.Options{Modules: []string{"btrfs"}, ModulesDir: "/nonexistent/6.1"}, "/nonexistent/6.1"},
		{"no source tree", initramfs.Options{SourceDir: t.TempDir()}, "go.mod"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.CacheDir = cache
			_, err := initramfs.Build(context.Background(), tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
			ents, _ := os.ReadDir(cache)
			for _, e := range ents {
				if strings.HasSuffix(e.Name(), ".cpio.xz") {
					t.Errorf("failed build left %s behind", e.Name())
				}
			}
		})
	}
}

func cpioList(t *testing.T, path string, flags string) string {
	t.Helper()
	cmd := exec.Command("sh", "-c", "xz -dc \"$1\" | cpio "+flags+" --quiet", "sh", path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio %s: %v\n%s", flags, err, out)
	}
	return string(out)
}

// extract returns one file of the archive, unpacked by GNU cpio.
func extract(t *testing.T, archive, name string) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("sh", "-c", "xz -dc \"$1\" | cpio -id --quiet \"$2\"", "sh", archive, name)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -id %s: %v\n%s", name, err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
