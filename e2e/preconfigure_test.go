package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/testenv"
)

// preReport prints, from the node's own init at its first boot, what
// preconfigure must have left and what first boot must have made.
const preReport = `#!/bin/sh
exec >/dev/console 2>&1
echo "E2E-PRE: packages $(dpkg-query -W -f '${Status}\n' | grep -c '^install ok installed$') installed of $(dpkg-query -W -f '.\n' | wc -l)"
if [ -s /etc/ssh/ssh_host_ed25519_key ]; then echo "E2E-PRE: host key $(ssh-keygen -l -f /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f2)"; else echo "E2E-PRE: host key missing"; fi
echo "E2E-PRE: machine-id $(cat /etc/machine-id)"
echo "E2E-PRE: done"
`

const preReportUnit = `[Unit]
Description=e2e preconfigure report
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/e2e-pre-report
[Install]
WantedBy=multi-user.target
`

func preOverlay(t *testing.T) string {
	t.Helper()
	return systemdOverlay(t, "e2e-pre-report.service", map[string]overlayFile{
		"usr/local/sbin/e2e-pre-report":             {preReport, 0o755},
		"etc/systemd/system/e2e-pre-report.service": {preReportUnit, 0o644},
	})
}

// TestPreconfigure: `--preconfigure` configures the Debian root's
// packages in QEMU at build time. The image carries the hook as done and
// no SSH host key; the node's first boot runs no hook, finds every package
// installed and makes its own host key and machine-id.
func TestPreconfigure(t *testing.T) {
	needQEMU(t)
	testenv.NeedTools(t, "apt-get", "btrfs", "sfdisk")
	dir := t.TempDir()
	img := filepath.Join(dir, "node.img")
	start := time.Now()
	_, errs, err := run(t, nil, "--board", "qemu-virt", "--rootfs", "debian", "--preconfigure", "--overlay", preOverlay(t), "-o", img)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, tail(errs, 60))
	}
	t.Logf("build with --preconfigure: %v", time.Since(start).Round(time.Second))
	for _, l := range strings.Split(errs, "\n") {
		if strings.Contains(l, "preconfigure") {
			t.Log(l)
		}
	}

	var man struct{ Warnings []string }
	data, err := os.ReadFile(img + ".manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &man); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(man.Warnings, "\n"), "preconfigured in QEMU") {
		t.Errorf("manifest warnings do not say the image was preconfigured: %q", man.Warnings)
	}
	if _, err := os.Stat(img + ".bmap"); err != nil {
		t.Error(err)
	}

	// The root as the image holds it: the firstboot state, no host key.
	p2 := extract(t, img, 2)
	tool(t, "btrfs", "check", "--readonly", p2)
	dump := tool(t, "btrfs", "inspect-internal", "dump-tree", p2)
	if !strings.Contains(dump, "name: firstboot.json") || !strings.Contains(dump, "name: sshd_config") {
		t.Fatal("dump-tree shows no firstboot.json or sshd_config: not the root's tree")
	}
	if m := regexp.MustCompile(`name: ssh_host_\S+`).FindAllString(dump, -1); len(m) > 0 {
		t.Errorf("the preconfigured image holds SSH host keys: %v", m)
	}

	bootStart := time.Now()
	log := qemu(t, img, "E2E-PRE: done", "--timeout", "6m")
	t.Logf("first boot to the report: %v", time.Since(bootStart).Round(time.Second))
	if strings.Contains(log, "nodeinit: hook 50-dpkg-configure") || strings.Contains(log, "hook 50-dpkg-configure: running") {
		t.Errorf("the first boot ran the dpkg hook again:\n%s", grepLines(log, "50-dpkg-configure"))
	}
	if !regexp.MustCompile(`nodeinit: firstboot: already done: .*hook:50-dpkg-configure`).MatchString(log) {
		t.Errorf("first boot does not log the hook as already done:\n%s", grepLines(log, "firstboot"))
	}
	for _, want := range []string{"nodeinit: firstboot: machine-id done", "nodeinit: firstboot: ssh-host-keys done"} {
		if !strings.Contains(log, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	m := regexp.MustCompile(`E2E-PRE: packages (\d+) installed of (\d+)`).FindStringSubmatch(log)
	if m == nil || m[1] != m[2] || m[1] == "0" {
		t.Errorf("not every package is installed: %v", m)
	} else {
		t.Logf("%s of %s packages installed", m[1], m[2])
	}
	if !regexp.MustCompile(`E2E-PRE: host key SHA256:\S+`).MatchString(log) {
		t.Errorf("the node has no SSH host key after its first boot:\n%s", grepLines(log, "E2E-PRE"))
	}
	if !regexp.MustCompile(`E2E-PRE: machine-id [0-9a-f]{32}\r?\n`).MatchString(log) {
		t.Errorf("the node has no machine-id:\n%s", grepLines(log, "E2E-PRE"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestPreconfigureNeedsDebian: --preconfigure with another root is an
// error naming the flag, and nothing is written.
func TestPreconfigureNeedsDebian(t *testing.T) {
	img := filepath.Join(t.TempDir(), "node.img")
	_, errs, err := run(t, nil, "--board", "qemu-virt", "--rootfs", "minimal", "--preconfigure", "-o", img)
	if err == nil || !strings.Contains(errs, "--preconfigure") {
		t.Fatalf("--rootfs minimal --preconfigure: err %v, stderr:\n%s", err, errs)
	}
	if ents, _ := os.ReadDir(filepath.Dir(img)); len(ents) != 0 {
		t.Errorf("a failed build left %v", ents)
	}
}
