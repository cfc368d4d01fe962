package e2e

import (
	"bytes"
	"crypto/rand"
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

	"github.com/mkimage/mkimage/internal/build/uboot"
	"github.com/mkimage/mkimage/internal/testenv"
	"github.com/mkimage/mkimage/internal/update"
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
	for _, f := range []string{"boot.scr.uimg", "Image.gz", "initrd.img", "root.img", "root.img.bmap",
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
	if _, errs, err := run(t, nil, "netboot", "--board", "qemu-virt", "--rootfs", "minimal", "--default-mode", "nfs", "-o", filepath.Join(t.TempDir(), "x")); err == nil || !strings.Contains(errs, `netboot mode "nfs"`) {
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
	mustRun(t, "netboot", "--board", "qemu-virt", "--rootfs", "minimal", "--config", cfg, "-o", dir)
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

// netbootQEMUConfig is the cluster the QEMU test boots: node01 runs from
// a root in RAM, node02 installs its card from the network.
const netbootQEMUConfig = `
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

[[node]]
name = "node02"
mac = "52:54:00:4e:42:02"
ip = "10.78.0.12"
role = "worker"
netboot = "install"
`

// netMarker is printed by the root's own init (/etc/boot.d): the node's
// hostname (first boot sets it from the inventory) and the device that
// holds "/".
const netMarker = `echo "E2E-NETBOOT host=$(hostname) root=$(awk '$2=="/"{d=$1} END{print d}' /proc/mounts)"`

// provNet is a provisioning network inside a network namespace made for
// the test: a bridge with the server's address and a tap for QEMU.
type provNet struct {
	ns        string
	serverLog *console
	stop      func() error // stops mkimage serve; idempotent
}

func newProvNet(t *testing.T, dir, cfg string) *provNet {
	t.Helper()
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
	p := &provNet{ns: ns, serverLog: &console{}}
	srv := exec.Command("ip", "netns", "exec", ns, mkimageBin, "serve", dir, "--listen", "10.78.0.1", "--dhcp", "full", "--config", cfg)
	srv.Stdout, srv.Stderr = p.serverLog, p.serverLog
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Wait() }()
	var once sync.Once
	var stopErr error
	p.stop = func() error {
		once.Do(func() {
			srv.Process.Signal(syscall.SIGTERM)
			select {
			case stopErr = <-srvDone:
			case <-time.After(15 * time.Second):
				srv.Process.Kill()
				stopErr = fmt.Errorf("mkimage serve did not stop within 15 s of SIGTERM")
			}
		})
		return stopErr
	}
	t.Cleanup(func() { p.stop() })
	if !p.serverLog.waitFor(regexp.MustCompile(`serving .*dhcp full on br0`), 10*time.Second) {
		t.Fatalf("server did not start:\n%s", p.serverLog)
	}
	return p
}

// vm is a QEMU virt machine booting through u-boot-qemu on the tap.
type vm struct {
	con   *console
	start time.Time
	done  chan struct{} // closed when QEMU exits
}

// boot starts QEMU in the namespace with the given MAC and disk ("" for
// none). -no-reboot: a reboot ends QEMU.
func (p *provNet) boot(t *testing.T, mac, disk string) *vm {
	t.Helper()
	args := []string{"netns", "exec", p.ns, "qemu-system-aarch64",
		"-M", "virt", "-cpu", "cortex-a53", "-m", "1024", "-smp", "1", "-nographic", "-no-reboot",
		"-bios", ubootQEMU,
		"-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
		"-device", "virtio-net-device,netdev=n0,mac=" + mac}
	if disk != "" {
		args = append(args, "-drive", "if=none,file="+disk+",format=raw,id=hd0", "-device", "virtio-blk-device,drive=hd0")
	}
	v := &vm{con: &console{}, start: time.Now(), done: make(chan struct{})}
	q := exec.Command("ip", args...)
	q.Stdout, q.Stderr = v.con, v.con
	if err := q.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { q.Wait(); close(v.done) }()
	t.Cleanup(func() {
		q.Process.Kill()
		<-v.done
	})
	return v
}

type bootStep struct{ what, re string }

// expect waits for each step in turn, all within limit of the VM's
// start, and logs when each appeared.
func (v *vm) expect(t *testing.T, p *provNet, limit time.Duration, steps []bootStep) {
	t.Helper()
	for _, s := range steps {
		if !v.con.waitFor(regexp.MustCompile(s.re), limit-time.Since(v.start)) {
			t.Fatalf("no %s (%s) on the console after %v:\n%s\nserver log:\n%s", s.what, s.re, time.Since(v.start).Round(time.Second), lastBytes(v.con.String(), 5000), lastBytes(p.serverLog.String(), 3000))
		}
		t.Logf("%-34s after %v", s.what, time.Since(v.start).Round(100*time.Millisecond))
	}
}

// TestNetbootQEMU boots the qemu-virt board with no card through
// u-boot-qemu's dhcp boot target from `mkimage serve --dhcp full`: real
// DHCP, TFTP and HTTP on a bridge inside a network namespace made for
// the test, QEMU on a tap device on that bridge; nothing leaves the
// machine. One tree serves both netboot modes:
//
//   - diskless (node01): nodeinit gets its own lease, fetches root.img
//     over HTTP into RAM, checks its sha256, loop-mounts it and switches
//     into it; the root's init prints the marker with "/" on a loop device.
//   - install (node02, an empty raw disk): nodeinit writes node.img to
//     the disk, reads it back, checks it and reboots; then, with the
//     server stopped, the disk alone boots (U-Boot finds it before dhcp)
//     into the same root's init, "/" on the disk's root partition.
func TestNetbootQEMU(t *testing.T) {
	testenv.Short(t)
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "ip", "qemu-system-aarch64")
	testenv.NeedFile(t, ubootQEMU)
	start := time.Now()
	base := t.TempDir()
	cfg := filepath.Join(base, "cluster.toml")
	if err := os.WriteFile(cfg, []byte(netbootQEMUConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "tftp")
	key := filepath.Join(base, "netboot.key")
	mustRun(t, "key", "generate", "-o", key, "--comment", "e2e netboot")
	mustRun(t, "netboot", "--board", "qemu-virt", "--rootfs", "minimal", "--config", cfg, "-o", dir, "-q", "--overlay", markerOverlay(t, netMarker),
		"--update-key", key+".pub", "--key", key)
	t.Logf("mkimage netboot (diskless + install) took %v", time.Since(start).Round(100*time.Millisecond))
	// The qemu-virt board's U-Boot unpacks a gzip'd kernel (boards/qemu-virt.toml).
	kgz, err := os.Stat(filepath.Join(dir, "Image.gz"))
	if err != nil {
		t.Fatal(err)
	}
	p := newProvNet(t, dir, cfg)

	t.Run("diskless", func(t *testing.T) {
		v := p.boot(t, "52:54:00:4e:42:01", "")
		v.expect(t, p, 150*time.Second, []bootStep{
			{"U-Boot DHCP lease", `DHCP client bound to address 10\.78\.0\.11`},
			{"boot script by TFTP", `(?s)Filename 'boot\.scr\.uimg'.*Bytes transferred`},
			// What U-Boot holds after the script's setenvs: the TFTP
			// sizes every later load uses, booti's unpack area.
			{"TFTP sizes and unpack area set", fmt.Sprintf(`mkimage netboot: tftpblocksize 1468 tftpwindowsize 16 kernel_comp_addr_r 0x50000000 kernel_comp_size 0x%x\b`, kgz.Size())},
			{"pxelinux file for its MAC", `pxelinux\.cfg/01-52-54-00-4e-42-01`},
			{"gzip'd kernel by TFTP", fmt.Sprintf(`(?s)Filename 'Image\.gz'\..*?Bytes transferred = %d \(`, kgz.Size())},
			{"booti unpacks it", `Uncompressing Kernel Image`},
			{"kernel starting", `Booting Linux on physical CPU`},
			{"nodeinit sees the netroot", `nodeinit: config: root="http://:80/root\.img"`},
			{"nodeinit lease", `nodeinit: netboot: eth0: 10\.78\.0\.11/24, router 10\.78\.0\.1, boot server 10\.78\.0\.1`},
			{"signed tree required", `nodeinit: netboot: 1 netboot keys in the initramfs: only images the tree's signed images\.json lists are taken`},
			{"manifest signature verified", `nodeinit: netboot: http://10\.78\.0\.1:80/images\.json: signature verified \(key mkimage-ed25519-public \S+ e2e netboot\)`},
			{"root image verified", `nodeinit: netboot: http://10\.78\.0\.1:80/root\.img: sha256 [0-9a-f]{64} verified`},
			{"root mounted from RAM", `nodeinit: mounted /dev/loop\d+ on /newroot \(btrfs, diskless root in RAM`},
			{"switch_root", `nodeinit: switching root to /dev/loop\d+`},
			{"root's init marker", `E2E-NETBOOT host=node01 root=/dev/loop\d+`},
		})
		if strings.Contains(v.con.String(), "rescue shell") {
			t.Errorf("rescue shell on a good netroot:\n%s", lastBytes(v.con.String(), 3000))
		}
		// U-Boot's rate line after each TFTP load, for the log.
		for _, l := range regexp.MustCompile(`(?m)^\s*[\d.]+ [KM]iB/s`).FindAllString(v.con.String(), -1) {
			t.Logf("U-Boot TFTP: %s", strings.TrimSpace(l))
		}
		for _, l := range regexp.MustCompile(`nodeinit: (netboot|mounted|first-boot: complete).*`).FindAllString(v.con.String(), -1) {
			t.Logf("console: %s", strings.TrimSpace(l))
		}
	})

	// The same node served a manifest signed by another key: nodeinit
	// says why, mounts nothing and tries again; once the server has the
	// right signature back, the retry boots the root, no reboot needed.
	t.Run("diskless-other-key", func(t *testing.T) {
		sig := filepath.Join(dir, update.NetbootSignature)
		good, err := os.ReadFile(sig)
		if err != nil {
			t.Fatal(err)
		}
		doc, _ := os.ReadFile(filepath.Join(dir, update.NetbootFile))
		other, _ := update.GenerateKey(rand.Reader)
		os.WriteFile(sig, update.Sign(doc, other), 0o644)
		defer os.WriteFile(sig, good, 0o644)
		v := p.boot(t, "52:54:00:4e:42:01", "")
		v.expect(t, p, 120*time.Second, []bootStep{
			{"refused, naming the keys", `nodeinit: netboot: diskless root: http://10\.78\.0\.1:80/: invalid netboot tree: images\.sig is not a signature of images\.json by any of the 1 trusted keys \("e2e netboot"\).*; trying again in`},
		})
		if strings.Contains(v.con.String(), "switching root") || strings.Contains(v.con.String(), "root image verified") {
			t.Error("went on with a tree signed by another key")
		}
		os.WriteFile(sig, good, 0o644)
		v.expect(t, p, 60*time.Second, []bootStep{
			{"the retry verifies", `nodeinit: netboot: http://10\.78\.0\.1:80/images\.json: signature verified`},
			{"root's init marker", `E2E-NETBOOT host=node01 root=/dev/loop\d+`},
		})
	})

	t.Run("install", func(t *testing.T) {
		disk := filepath.Join(t.TempDir(), "card.img")
		f, err := os.Create(disk)
		if err != nil {
			t.Fatal(err)
		}
		f.Truncate(2 << 30) // an empty (all zero, sparse) 2 GiB card
		f.Close()
		v := p.boot(t, "52:54:00:4e:42:02", disk)
		v.expect(t, p, 150*time.Second, []bootStep{
			{"U-Boot DHCP lease", `DHCP client bound to address 10\.78\.0\.12`},
			{"pxelinux file for its MAC", `pxelinux\.cfg/01-52-54-00-4e-42-02`},
			{"nodeinit sees the install", `nodeinit: netboot: install http://:80/node\.img sha256 [0-9a-f]{64} to \(the only disk\)`},
			{"nodeinit lease", `nodeinit: netboot: eth0: 10\.78\.0\.12/24, router 10\.78\.0\.1, boot server 10\.78\.0\.1`},
			{"manifest signature verified", `nodeinit: netboot: http://10\.78\.0\.1:80/images\.json: signature verified`},
			{"card image verified", `nodeinit: netboot: http://10\.78\.0\.1:80/node\.img: sha256 [0-9a-f]{64} verified`},
			{"install done, reboot", `nodeinit: netboot: installed http://:80/node\.img on /dev/vda in .*; rebooting`},
		})
		select {
		case <-v.done:
		case <-time.After(30 * time.Second):
			t.Fatalf("QEMU still running 30 s after the reboot line:\n%s", lastBytes(v.con.String(), 2000))
		}
		if err := p.stop(); err != nil {
			t.Errorf("mkimage serve: %v", err)
		}

		// The card alone, the server gone.
		v2 := p.boot(t, "52:54:00:4e:42:02", disk)
		v2.expect(t, p, 120*time.Second, []bootStep{
			{"U-Boot reads the card", `Retrieving file: /extlinux/extlinux\.conf`},
			{"root found on the card", `nodeinit: root LABEL=root is /dev/vda2`},
			{"root's init marker", `E2E-NETBOOT host=node02 root=/dev/vda2`},
		})
		if strings.Contains(v2.con.String(), "nodeinit: netboot:") {
			t.Errorf("the installed card netboots again")
		}
	})

	if err := p.stop(); err != nil {
		t.Errorf("mkimage serve: %v", err)
	}
	slog := p.serverLog.String()
	for _, want := range []string{
		"DISCOVER from 52:54:00:4e:42:01 (node01): OFFER 10.78.0.11",
		"REQUEST from 52:54:00:4e:42:01 (node01): ACK 10.78.0.11",
		"REQUEST from 52:54:00:4e:42:02 (node02): ACK 10.78.0.12",
		`RRQ "boot.scr.uimg": sent`,
		`RRQ "pxelinux.cfg/01-52-54-00-4e-42-01": sent`,
		`RRQ "pxelinux.cfg/01-52-54-00-4e-42-02": sent`,
		fmt.Sprintf(`RRQ "Image.gz": sent %d bytes`, kgz.Size()),
		`RRQ "initrd.img": sent`,
		`GET "/root.img.bmap": 200`,
		`GET "/root.img" bytes=`,
		`GET "/node.img.bmap": 200`,
		`GET "/node.img" bytes=`,
		"stopped",
	} {
		if !strings.Contains(slog, want) {
			t.Errorf("server log lacks %q:\n%s", want, lastBytes(slog, 4000))
		}
	}
	t.Logf("whole test %v", time.Since(start).Round(time.Second))
}

func lastBytes(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
