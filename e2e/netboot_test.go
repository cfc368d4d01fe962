package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/testenv"
	"github.com/mkimage/mkimage/internal/uboot"
)

const ubootQEMU = "/usr/lib/u-boot/qemu_arm64/u-boot.bin"

// netbootConfig is a one-node cluster on a provisioning network that
// exists only inside the test's network namespace.
const netbootConfig = `
[cluster]
name = "nbtest"
domain = "nbtest.lan"

[network]
subnet = "10.78.0.0/24"
gateway = "10.78.0.1"
dns = ["10.78.0.1"]

[[node]]
name = "node01"
mac = "52:54:00:4e:42:01"
ip = "10.78.0.11"
role = "worker"
netboot = "diskless"
`

// TestNetbootArtifacts checks the tree mkimage netboot writes without
// booting it.
func TestNetbootArtifacts(t *testing.T) {
	testenv.Short(t)
	dir, _ := netbootTree(t)
	for _, f := range []string{"boot.scr.uimg", "Image", "initrd.img", "root.img", "root.img.bmap",
		"pxelinux.cfg/01-52-54-00-4e-42-01", "pxelinux.cfg/default-arm", "pxelinux.cfg/default"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("netboot tree lacks %s", f)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "pxelinux.cfg/01-52-54-00-4e-42-01"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := uboot.ParseMenu(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if a := m.Entries[0].Append; !strings.Contains(a, "console=ttyAMA0") || !strings.Contains(a, "root=http://:80/root.img") || !strings.Contains(a, "netroot.sha256=") {
		t.Errorf("append %q", a)
	}
	if _, errs, err := run(t, nil, "netboot", "--board", "qemu-virt", "--default-mode", "nfs", "-o", filepath.Join(t.TempDir(), "x")); err == nil || !strings.Contains(errs, `netboot mode "nfs"`) {
		t.Errorf("bad --default-mode: %v %s", err, errs)
	}
}

// netbootTree writes the netboot tree for the one-node cluster.
func netbootTree(t *testing.T) (dir, cfg string) {
	t.Helper()
	base := t.TempDir()
	cfg = filepath.Join(base, "cluster.toml")
	if err := os.WriteFile(cfg, []byte(netbootConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	dir = filepath.Join(base, "tftp")
	mustRun(t, "netboot", "--board", "qemu-virt", "--config", cfg, "-o", dir)
	return dir, cfg
}

// console collects QEMU's serial output and lets a test wait for text.
type console struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// waitFor waits until re matches the console, up to d.
func (c *console) waitFor(re *regexp.Regexp, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if re.MatchString(c.String()) {
			return true
		}
		time.Sleep(200 * time.Millisecond)
	}
	return false
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestNetbootQEMU boots the qemu-virt board with no disk through
// u-boot-qemu's dhcp boot target from `mkimage serve --dhcp full`: real
// DHCP, TFTP and HTTP on a bridge inside a network namespace made for
// the test, QEMU on a tap device on that bridge; nothing leaves the
// machine.
func TestNetbootQEMU(t *testing.T) {
	testenv.Short(t)
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "ip", "qemu-system-aarch64")
	testenv.NeedFile(t, ubootQEMU)
	dir, cfg := netbootTree(t)

	ns := fmt.Sprintf("mkimage-nb-%d", os.Getpid())
	ipCmd(t, "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "br0", "type", "bridge"},
		{"addr", "add", "10.78.0.1/24", "dev", "br0"},
		{"tuntap", "add", "tap0", "mode", "tap"},
		{"link", "set", "tap0", "master", "br0"},
		{"link", "set", "tap0", "up"},
		{"link", "set", "br0", "up"},
	} {
		ipCmd(t, append([]string{"-n", ns}, args...)...)
	}

	// The server, inside the namespace.
	serverLog := &console{}
	srv := exec.Command("ip", "netns", "exec", ns, mkimageBin, "serve", dir, "--listen", "10.78.0.1", "--dhcp", "full", "--config", cfg)
	srv.Stdout, srv.Stderr = serverLog, serverLog
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Wait() }()
	stopServer := func() error {
		srv.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-srvDone:
			return err
		case <-time.After(15 * time.Second):
			srv.Process.Kill()
			return fmt.Errorf("mkimage serve did not stop within 15 s of SIGTERM")
		}
	}
	defer func() {
		if srv.ProcessState == nil {
			stopServer()
		}
	}()
	if !serverLog.waitFor(regexp.MustCompile(`serving .*dhcp full on br0`), 10*time.Second) {
		t.Fatalf("server did not start:\n%s", serverLog)
	}

	// QEMU with no disk: u-boot's boot targets end in dhcp.
	con := &console{}
	start := time.Now()
	q := exec.Command("ip", "netns", "exec", ns, "qemu-system-aarch64",
		"-M", "virt", "-cpu", "cortex-a53", "-m", "1024", "-smp", "1", "-nographic", "-no-reboot",
		"-bios", ubootQEMU,
		"-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
		"-device", "virtio-net-device,netdev=n0,mac=52:54:00:4e:42:01")
	q.Stdout, q.Stderr = con, con
	q.Stdin = nil
	if err := q.Start(); err != nil {
		t.Fatal(err)
	}
	qDone := make(chan struct{})
	go func() { q.Wait(); close(qDone) }()
	defer func() {
		q.Process.Kill()
		<-qDone
	}()

	steps := []struct{ what, re string }{
		{"DHCP lease", `DHCP client bound to address 10\.78\.0\.11`},
		{"boot script by TFTP", `(?s)Filename 'boot\.scr\.uimg'.*Bytes transferred`},
		{"pxelinux file for its MAC", `pxelinux\.cfg/01-52-54-00-4e-42-01`},
		{"kernel by TFTP", `(?s)Filename 'Image'.*Bytes transferred`},
		{"kernel starting", `Booting Linux on physical CPU`},
		{"nodeinit", `nodeinit: starting`},
		{"nodeinit sees the netroot", `nodeinit: config: root="http://:80/root\.img"`},
	}
	for _, s := range steps {
		if !con.waitFor(regexp.MustCompile(s.re), 240*time.Second-time.Since(start)) {
			t.Fatalf("no %s (%s) on the console after %v:\n%s\nserver log:\n%s", s.what, s.re, time.Since(start).Round(time.Second), lastBytes(con.String(), 4000), serverLog)
		}
		t.Logf("%-28s after %v", s.what, time.Since(start).Round(100*time.Millisecond))
	}
	if err := stopServer(); err != nil {
		t.Errorf("mkimage serve: %v", err)
	}
	slog := serverLog.String()
	for _, want := range []string{
		"DISCOVER from 52:54:00:4e:42:01 (node01): OFFER 10.78.0.11",
		"REQUEST from 52:54:00:4e:42:01 (node01): ACK 10.78.0.11",
		`RRQ "boot.scr.uimg": sent`,
		`RRQ "pxelinux.cfg/01-52-54-00-4e-42-01": sent`,
		`RRQ "Image": sent`,
		`RRQ "initrd.img": sent`,
		"stopped",
	} {
		if !strings.Contains(slog, want) {
			t.Errorf("server log lacks %q:\n%s", want, slog)
		}
	}
	// The root's own init is reached only once nodeinit mounts a
	// root=http:// root through internal/netroot (see the netboot issue
	// note); until then nodeinit reports the root spec it cannot use.
	if m := regexp.MustCompile(`nodeinit: .*(http://:80/root.img).*`).FindString(con.String()); m != "" {
		t.Logf("console: %s", strings.TrimSpace(m))
	}
}

func lastBytes(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
