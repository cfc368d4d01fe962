package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/testenv"
	"github.com/mkimage/mkimage/internal/update"
	"github.com/mkimage/mkimage/internal/update/registry/registrytest"
)

// fleetTOML is a one-node fleet in QEMU's user network: the worker is
// QEMU's default NIC, its rollout has no soak so the test need not wait.
const fleetTOML = `[cluster]
name = "e2e"
domain = "e2e.lan"

[network]
subnet = "10.0.2.0/24"
gateway = "10.0.2.2"
dns = ["10.0.2.3"]

[rollout]
max_rebooting = 1
max_failures = 0
min_soak = "0s"

[[node]]
name = "w1"
mac = "52:54:00:12:34:56"
ip = "10.0.2.15"
role = "worker"
`

// TestUpdateFromRegistry: the fleet path end to end. A version pushed
// with mkimage update push to a real registry (Debian's docker-registry,
// reached from QEMU's user network at 10.0.2.2) is rolled out by mkimage
// fleet rollout, which publishes a signed channel under mkimage serve's
// directory. The node (named and given its role by the cluster config)
// follows the channel in its /etc/mkimage/channel-url with its own
// nodeinit: its wave is open, it applies the version from the channel's
// oci+http:// source incrementally, takes a reboot lease from the status
// server and reboots; the next boot runs it and commits it, the rollout
// sees the commit and completes, and mkimage fleet status shows it.
func TestUpdateFromRegistry(t *testing.T) {
	needQEMU(t)
	testenv.NeedTools(t, "btrfs")
	reg := registrytest.Start(t, registrytest.Options{})
	_, port, err := net.SplitHostPort(reg.Host())
	if err != nil {
		t.Fatal(err)
	}
	source := "oci+http://10.0.2.2:" + port + "/fleet/qemu-virt:current"
	dir := t.TempDir()
	cfg := filepath.Join(dir, "cluster.toml")
	if err := os.WriteFile(cfg, []byte(fleetTOML), 0o644); err != nil {
		t.Fatal(err)
	}
	served := filepath.Join(dir, "served")
	if err := os.MkdirAll(served, 0o755); err != nil {
		t.Fatal(err)
	}
	sport := serveBundles(t, served, "--config", cfg)
	server := fmt.Sprintf("http://127.0.0.1:%d", sport)
	channelURL := fmt.Sprintf("http://10.0.2.2:%d/channel.json", sport)

	key := filepath.Join(dir, "fleet")
	mustRun(t, "key", "generate", "-o", key)
	inputs := func(marker string, extra ...string) []string {
		ov := rollbackOverlay(t, marker, channelURL, nil)
		// The node follows the channel, not a bundle URL.
		if err := os.Remove(filepath.Join(ov, "etc/mkimage/update-url")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ov, "etc/mkimage/channel-url"), []byte(channelURL+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return append([]string{"--board", "qemu-virt", "--rootfs", "minimal", "--config", cfg, "--update-key", key + ".pub",
			"--overlay", ov, "-q"}, extra...)
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

	// The rollout runs beside the boots, as an operator's would.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	rollout := exec.CommandContext(ctx, mkimageBin, "fleet", "rollout", "--config", cfg, "--server", server, "--key", key,
		"--channel-file", filepath.Join(served, "channel.json"), "--version", v2, "--source", source, "--poll", "1s")
	var rlog strings.Builder
	rollout.Stdout, rollout.Stderr = &rlog, &rlog
	if err := rollout.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- rollout.Wait() }()
	defer func() { cancel(); <-done; t.Logf("mkimage fleet rollout:\n%s", rlog.String()) }()
	for i := 0; ; i++ {
		if _, err := os.Stat(filepath.Join(served, "channel.json")); err == nil {
			break
		}
		if i == 100 {
			t.Fatalf("no channel published in 10 s:\n%s", rlog.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Boot 1: v1 follows the channel, applies v2 from the registry,
	// incrementally, and reboots once the server leases it a reboot.
	log := bootOnce(t, img)
	if id, marker, _, _ := report(log); id != v1 || marker != "one" {
		t.Fatalf("boot 1 runs %q marker %q, want v1 %s:\n%s", id, marker, v1, tail(log, 40))
	}
	consoleHas(t, log,
		"nodeinit: update: applying version "+v2+" (board qemu-virt) from "+source,
		"nodeinit: update: version "+v2+": incremental root from "+v1,
		"nodeinit: update: version "+v2+" installed",
		"nodeinit: update: reboot lease granted",
	)
	// Boot 2: U-Boot tries v2; it passes its checks and is committed.
	log = bootOnce(t, img)
	if id, marker, arg, _ := report(log); id != v2 || marker != "two" || arg != "e2e.arg=two" {
		t.Fatalf("boot 2 runs %q marker %q %q, want v2 %s:\n%s", id, marker, arg, v2, tail(log, 40))
	}
	consoleHas(t, log, "nodeinit: update: version "+v2+" passed its checks: committed")

	// The rollout saw the commit; nothing else is left to roll out to.
	select {
	case err := <-done:
		done <- err // for the deferred log
		if err != nil {
			t.Fatalf("mkimage fleet rollout: %v\n%s", err, rlog.String())
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("mkimage fleet rollout did not finish 2 min after the commit:\n%s", rlog.String())
	}
	if !strings.Contains(rlog.String(), "complete") {
		t.Errorf("rollout output says nothing of completing:\n%s", rlog.String())
	}
	st := mustRun(t, "fleet", "status", "--config", cfg, "--server", server)
	t.Logf("mkimage fleet status:\n%s", st)
	if !strings.Contains(st, "w1") || strings.Count(st, v2) < 2 {
		t.Errorf("fleet status does not show w1 running and good on %s:\n%s", v2, st)
	}
}
