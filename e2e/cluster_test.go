package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	qemuvm "github.com/mkimage/mkimage/internal/build/qemu"
	"github.com/mkimage/mkimage/internal/testenv"
)

// clusterTOML is a cluster inside QEMU's user network (slirp): 10.0.2.0/24
// with slirp's gateway 10.0.2.2 and DNS 10.0.2.3; slirp hands out
// 10.0.2.15, the router's address, so its static config is the one slirp
// expects. The router forwards with a drop policy, masquerades the LXC
// network and, as every node, routes 192.168.77.0/24 via the gateway.
const clusterTOML = `[cluster]
name = "e2e"
domain = "e2e.lan"

[network]
subnet = "10.0.2.0/24"
gateway = "10.0.2.2"
dns = ["10.0.2.3"]

[[network.route]]
destination = "192.168.77.0/24"
via = "10.0.2.2"

[network.role.router]
ip_forward = true
forward_policy = "drop"

[[network.role.router.forward]]
in = "eth0"
source = "10.0.2.0/24"
destination = "192.168.77.0/24"
action = "accept"

[[network.role.router.forward]]
in = "eth0"
destination = "192.168.0.0/16"
action = "reject"

[[network.role.router.nat]]
out = "eth0"
source = "10.0.3.0/24"

[power]
default = "performance"

[[node]]
name = "rtr"
mac = "52:54:00:e2:e0:01"
ip = "10.0.2.15"
role = "router"

[[node]]
name = "wrk"
mac = "52:54:00:e2:e0:02"
ip = "10.0.2.16"
role = "worker"
`

const (
	routerMAC  = "52:54:00:e2:e0:01"
	workerMAC  = "52:54:00:e2:e0:02"
	unknownMAC = "52:54:00:e2:e0:99"
	cardSize   = 2 << 30
)

// clusterOverlay adds two hooks to the minimal root: a first-boot hook
// (nodeinit runs it once, chrooted) and a boot hook that reports what the
// node looks like from its own init.
func clusterOverlay(t *testing.T) string {
	t.Helper()
	dir := markerOverlay(t, `echo "E2E-NODE host=$(hostname) fwd=$(cat /proc/sys/net/ipv4/ip_forward)`+
		` start=$(cat /sys/class/block/vda2/start) part=$(cat /sys/class/block/vda2/size)`+
		` fskb=$(df -k / | awk 'NR==2{print $2}') key=$(sha256sum /etc/ssh/ssh_host_ed25519_key.pub | cut -c1-16)"
ip route | sed 's/^/E2E-ROUTE /'
echo E2E-DONE`)
	hooks := filepath.Join(dir, "usr/lib/nodeinit/firstboot.d")
	if err := os.MkdirAll(hooks, 0o755); err != nil {
		t.Fatal(err)
	}
	hook := "#!/bin/sh\necho \"chrooted on $(cat /etc/hostname) as $NODEINIT_HOSTNAME, proc=$(cat /proc/sys/kernel/ostype)\"\n"
	if err := os.WriteFile(filepath.Join(hooks, "10-e2e"), []byte(hook), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// clusterNode is what the boot hook printed.
type clusterNode struct {
	Host, Fwd, Key   string
	Start, Part, FSK int64
	Routes           []string
}

var nodeLine = regexp.MustCompile(`E2E-NODE host=(\S*) fwd=(\S*) start=(\d+) part=(\d+) fskb=(\d+) key=(\S*)`)

func parseNode(t *testing.T, log string) clusterNode {
	t.Helper()
	m := nodeLine.FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("no E2E-NODE line:\n%s", tail(log, 40))
	}
	n := clusterNode{Host: m[1], Fwd: m[2], Key: m[6]}
	n.Start, _ = strconv.ParseInt(m[3], 10, 64)
	n.Part, _ = strconv.ParseInt(m[4], 10, 64)
	n.FSK, _ = strconv.ParseInt(m[5], 10, 64)
	for _, l := range strings.Split(log, "\n") {
		if r, ok := strings.CutPrefix(strings.TrimSpace(l), "E2E-ROUTE "); ok {
			n.Routes = append(n.Routes, strings.TrimSpace(r))
		}
	}
	return n
}

// clusterCard is a fresh copy of img grown to cardSize, as a bigger SD card
// written from the image.
func clusterCard(t *testing.T, img string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "card.img")
	if err := qemuvm.CopyImage(img, p, cardSize); err != nil {
		t.Fatal(err)
	}
	return p
}

// bootCard boots disk itself (so a second boot sees the first's writes) with
// the NIC's MAC set, and returns the console and the hook's report.
func bootCard(t *testing.T, disk, mac string) (string, clusterNode) {
	t.Helper()
	start := time.Now()
	log := qemu(t, disk, "E2E-DONE", "--in-place", "--mac", mac)
	t.Logf("boot with %s: %v", mac, time.Since(start).Round(100*time.Millisecond))
	return log, parseNode(t, log)
}

func consoleHas(t *testing.T, log string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(log, w) {
			t.Errorf("console lacks %q", w)
		}
	}
	if t.Failed() {
		t.Logf("console:\n%s", tail(log, 70))
	}
}

// rootGrown checks that the root partition ends at the end of the disk and the
// filesystem fills it.
func rootGrown(t *testing.T, n clusterNode) {
	t.Helper()
	if end := (n.Start + n.Part) * 512; end != cardSize {
		t.Errorf("root partition ends at byte %d (start %d, %d sectors), want the disk's end %d", end, n.Start, n.Part, int64(cardSize))
	}
	// df shows the btrfs device size (equal to the partition on Debian's
	// 6.1); allow 1% for a kernel that reserves some.
	if part := n.Part / 2; n.FSK < part-part/100 || n.FSK > part {
		t.Errorf("btrfs size %d KiB, partition %d KiB: filesystem not grown to the partition", n.FSK, part)
	}
}

// TestClusterNodes: one image built with --config boots as the router and
// as a worker on cards of 2 GiB. First boot gives each its inventory name,
// its own SSH host keys and a root grown to the card; the router's
// forwarding, rules and route are in the kernel; a second boot redoes no
// first-boot step; an unknown MAC boots under a name derived from it, with
// one warning. Power cuts during first boot: TestPowerCut.
func TestClusterNodes(t *testing.T) {
	needQEMU(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "cluster.toml")
	if err := os.WriteFile(cfg, []byte(clusterTOML), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "node.img")
	mustRun(t, "--board", "qemu-virt", "--rootfs", "minimal", "-o", img, "-q", "--config", cfg, "--overlay", clusterOverlay(t))

	router := clusterCard(t, img)
	var first clusterNode
	ok := t.Run("router first boot", func(t *testing.T) {
		log, n := bootCard(t, router, routerMAC)
		first = n
		if n.Host != "rtr" || n.Fwd != "1" {
			t.Errorf("hostname %q ip_forward %q, want rtr and 1", n.Host, n.Fwd)
		}
		if n.Key == "" {
			t.Error("no SSH host key in the root")
		}
		rootGrown(t, n)
		if !strings.Contains(strings.Join(n.Routes, "\n"), "192.168.77.0/24 via 10.0.2.2 dev eth0") {
			t.Errorf("the root's init sees routes %q, want 192.168.77.0/24 via 10.0.2.2 dev eth0", n.Routes)
		}
		consoleHas(t, log,
			"nodeinit: firstboot: node rtr (52:54:00:e2:e0:01 on eth0)",
			"nodeinit: firstboot: grow-filesystem done",
			"nodeinit: hook 10-e2e: chrooted on rtr as rtr, proc=Linux",
			"nodeinit: firstboot: hook 10-e2e done",
			"nodeinit: first-boot: complete",
			"nodeinit: policy: ip_forward=1",
			"nodeinit: policy: nftables table ip nodeinit: 4 rules (forward, policy drop: 3; postrouting: 1)",
			"nodeinit: policy: route 192.168.77.0/24 via 10.0.2.2 dev eth0",
			"nodeinit: cpufreq: not available, governor skipped",
			"nodeinit: hostname: rtr",
		)
		if strings.Contains(log, "differ from the plan") {
			t.Errorf("policy differs from the plan:\n%s", tail(log, 30))
		}
		if strings.Index(log, "hook 10-e2e done") > strings.Index(log, "nodeinit: policy:") {
			t.Error("the first-boot hook ran after policy")
		}
	})

	t.Run("second node", func(t *testing.T) {
		log, n := bootCard(t, clusterCard(t, img), workerMAC)
		if n.Host != "wrk" || n.Fwd != "0" {
			t.Errorf("hostname %q ip_forward %q, want wrk and 0", n.Host, n.Fwd)
		}
		if n.Key == "" || n.Key == first.Key {
			t.Errorf("host key hash %q, the router's %q: want its own", n.Key, first.Key)
		}
		rootGrown(t, n)
		consoleHas(t, log, "nodeinit: policy: ip_forward=0", "nodeinit: policy: nftables: no table ip nodeinit", "nodeinit: hostname: wrk")
	})

	t.Run("router second boot", func(t *testing.T) {
		if !ok {
			t.Skip("the first boot failed")
		}
		log, n := bootCard(t, router, routerMAC)
		if n.Key != first.Key {
			t.Errorf("host key hash changed from %s to %s", first.Key, n.Key)
		}
		if n.Host != "rtr" || n.Fwd != "1" {
			t.Errorf("hostname %q ip_forward %q", n.Host, n.Fwd)
		}
		rootGrown(t, n)
		consoleHas(t, log,
			"nodeinit: firstboot: already done: machine-id, ssh-host-keys, hostname, hosts, network, authorized-keys, timezone, disk-id, grow-partition, grow-filesystem, subvolumes, hook:10-e2e",
			"nodeinit: first-boot: nothing to do",
			"nodeinit: policy: applied for rtr",
			"nodeinit: policy: nftables table ip nodeinit: 4 rules",
			"nodeinit: policy: route 192.168.77.0/24 via 10.0.2.2 dev eth0",
			"nodeinit: hostname: rtr", // the kernel's, set at every boot
		)
		for _, redone := range []string{"machine-id done", "hook 10-e2e: chrooted", "partition 2:"} {
			if strings.Contains(log, redone) {
				t.Errorf("second boot redid first-boot work: %q", redone)
			}
		}
	})

	t.Run("unknown MAC", func(t *testing.T) {
		log, n := bootCard(t, clusterCard(t, img), unknownMAC)
		want := "node-" + strings.ReplaceAll(unknownMAC, ":", "")
		if n.Host != want || n.Fwd != "0" {
			t.Errorf("hostname %q ip_forward %q, want %s and 0", n.Host, n.Fwd, want)
		}
		var warnings []string
		for _, l := range strings.Split(log, "\n") {
			if strings.Contains(l, "nodeinit:") && strings.Contains(l, "warning") {
				warnings = append(warnings, strings.TrimSpace(l))
			}
		}
		wantWarn := fmt.Sprintf("nodeinit: firstboot: warning: MAC %s (eth0) is not in the inventory; hostname %s, DHCP", unknownMAC, want)
		if len(warnings) != 1 || warnings[0] != wantWarn {
			t.Errorf("warnings %q, want exactly %q", warnings, wantWarn)
		}
		consoleHas(t, log, "nodeinit: hostname: "+want)
	})
}

// TestClusterConfigRejected: a config with a duplicate MAC stops the build
// before anything is written, naming the file and line.
func TestClusterConfigRejected(t *testing.T) {
	testenv.Short(t)
	dir := t.TempDir()
	bad := strings.Replace(clusterTOML, `mac = "52:54:00:e2:e0:02"`, `mac = "52:54:00:E2:E0:01"`, 1)
	line := 0
	for i, l := range strings.Split(bad, "\n") {
		if strings.Contains(l, "52:54:00:E2:E0:01") {
			line = i + 1
		}
	}
	cfg := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(cfg, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "node.img")
	start := time.Now()
	_, stderr, err := run(t, nil, "--board", "qemu-virt", "--rootfs", "minimal", "-o", out, "--config", cfg)
	if err == nil {
		t.Fatal("mkimage accepted a duplicate MAC")
	}
	if want := fmt.Sprintf("%s:%d:", cfg, line); !strings.Contains(stderr, want) || !strings.Contains(stderr, "duplicate MAC") {
		t.Errorf("stderr does not name %s and the duplicate MAC:\n%s", want, stderr)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != "bad.toml" {
			t.Errorf("left %s behind", e.Name())
		}
	}
	t.Logf("rejected in %v", time.Since(start).Round(time.Millisecond))
}

// TestQemuClusterExample: examples/qemu-cluster.toml is the cluster this
// file boots, so what examples/README.md shows holds, and it validates.
func TestQemuClusterExample(t *testing.T) {
	testenv.Short(t)
	p := "../examples/qemu-cluster.toml"
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(b), clusterTOML) {
		t.Errorf("%s no longer ends with the cluster TestClusterNodes boots; update one from the other", p)
	}
	if out := mustRun(t, "config", "check", p); !strings.Contains(out, "ok, 2 nodes") {
		t.Errorf("config check:\n%s", out)
	}
}
