package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/mkimage/mkimage/internal/testenv"
	"github.com/mkimage/mkimage/internal/update"
	"github.com/mkimage/mkimage/internal/update/registry/registrytest"
)

// TestUpdateFromRegistry: a version pushed with mkimage update push to a
// real registry (Debian's docker-registry, reached from QEMU's user
// network at 10.0.2.2) is applied by the node's own nodeinit from its
// /etc/mkimage/update-url, oci+http://...: incrementally, and the next
// boot runs it.
func TestUpdateFromRegistry(t *testing.T) {
	needQEMU(t)
	testenv.NeedTools(t, "btrfs")
	reg := registrytest.Start(t, registrytest.Options{})
	_, port, err := net.SplitHostPort(reg.Host())
	if err != nil {
		t.Fatal(err)
	}
	url := "oci+http://10.0.2.2:" + port + "/fleet/qemu-virt:current"
	dir := t.TempDir()
	key := filepath.Join(dir, "fleet")
	mustRun(t, "key", "generate", "-o", key)
	inputs := func(marker string, extra ...string) []string {
		return append([]string{"--board", "qemu-virt", "--rootfs", "minimal", "--update-key", key + ".pub",
			"--overlay", rollbackOverlay(t, marker, url, nil), "-q"}, extra...)
	}
	bundleOf := func(name string, epoch int, in []string, extra ...string) string {
		t.Helper()
		out := filepath.Join(dir, name)
		args := append(append([]string{"update", "--key", key, "-o", out}, in...), extra...)
		if _, errs, err := run(t, []string{fmt.Sprintf("SOURCE_DATE_EPOCH=%d", epoch)}, args...); err != nil {
			t.Fatalf("update %s: %v\n%s", name, err, errs)
		}
		var m update.Manifest
		b, err := os.ReadFile(filepath.Join(out, update.ManifestFile))
		if err == nil {
			err = json.Unmarshal(b, &m)
		}
		if err != nil {
			t.Fatal(err)
		}
		return m.ID
	}

	v1in := inputs("one")
	img := filepath.Join(dir, "card.img")
	if _, errs, err := run(t, []string{"SOURCE_DATE_EPOCH=1700000000"}, append(v1in, "-o", img)...); err != nil {
		t.Fatalf("build v1: %v\n%s", err, errs)
	}
	v1 := bundleOf("v1", 1700000000, v1in)
	v2 := bundleOf("v2", 1700000100, inputs("two", "--append", "e2e.arg=two"), "--parent", filepath.Join(dir, "v1"))
	out := mustRun(t, "update", "push", filepath.Join(dir, "v2"), reg.Host()+"/fleet/qemu-virt:current", "--keys", key+".pub", "-q")
	t.Logf("v1 %s, v2 %s; push:\n%s", v1, v2, out)

	// Boot 1: v1 applies v2 from the registry, incrementally, and reboots.
	log := bootOnce(t, img)
	if id, marker, _, _ := report(log); id != v1 || marker != "one" {
		t.Fatalf("boot 1 runs %q marker %q, want v1 %s:\n%s", id, marker, v1, tail(log, 40))
	}
	consoleHas(t, log,
		"nodeinit: update: applying version "+v2+" (board qemu-virt) from "+url,
		"nodeinit: update: version "+v2+": incremental root from "+v1,
		"nodeinit: update: version "+v2+" installed",
	)
	// Boot 2: U-Boot tries v2.
	log = bootOnce(t, img)
	if id, marker, arg, _ := report(log); id != v2 || marker != "two" || arg != "e2e.arg=two" {
		t.Fatalf("boot 2 runs %q marker %q %q, want v2 %s:\n%s", id, marker, arg, v2, tail(log, 40))
	}
	consoleHas(t, log, "nodeinit: update: version "+v2+" passed its checks: committed")
}
