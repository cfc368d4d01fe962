package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/cluster"
	"github.com/mkimage/mkimage/internal/cluster/plan"
	"github.com/mkimage/mkimage/internal/node/btrfsctl"
	"github.com/mkimage/mkimage/internal/testenv"
)

const moveConfig = `[cluster]
name = "t"
[network]
subnet = "192.168.142.0/24"
[[node]]
name = "gw"
mac = "00:1e:06:00:00:01"
ip = "192.168.142.1"
role = "gateway"
[[node]]
name = "node01"
mac = "00:1e:06:00:00:02"
ip = "192.168.142.11"
role = "worker"
[[node]]
name = "node02"
mac = "00:1e:06:00:00:03"
ip = "192.168.142.12"
role = "worker"
[lxc]
bridge = "lxcbr0"
address = "10.0.3.1/24"
[[lxc.container]]
name = "c-web"
node = "node01"
ip = "10.0.3.10"
mac = "00:16:3e:00:00:10"
[[service]]
name = "web"
container = "c-web"
port = 8080
protocol = "http"
hosts = ["www.example.org"]
`

// moveNode is one node of TestMove: its root, network namespace and sshd.
type moveNode struct {
	plan.Plan
	root, ns string
	sshd     testenv.SSHD
}

// moveCluster is TestMove's cluster: the real nodeinit on each node, in
// its own root and network namespace, reached through its own sshd, with
// the real btrfs, rsync, ssh and LXC. Each node's command runs in a
// mount namespace of its own where /var/lib/lxc is the node's, so the
// containers' configs name their roots as on a node.
type moveCluster struct {
	baked           *plan.Baked
	nodes           map[string]*moveNode
	sshCfg, wrapper string
	nodeenv         string // runs a command as on a node: see newMoveCluster
	cut             string // present: a receive of pass 2 gets only its first bytes
}

func newMoveCluster(t *testing.T) *moveCluster {
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "btrfs", "mkfs.btrfs", "rsync", "ssh", "ip", "nft", "go", "head", "unshare", "mount", "nsenter")
	cfg, err := cluster.Parse("move.toml", []byte(moveConfig))
	if err != nil {
		t.Fatal(err)
	}
	c := &moveCluster{baked: cfg.Bake(), nodes: map[string]*moveNode{}}
	dir := t.TempDir()
	bin := filepath.Join(dir, "nodeinit.bin")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/mkimage/mkimage/cmd/nodeinit").CombinedOutput(); err != nil {
		t.Fatalf("building nodeinit: %v\n%s", err, out)
	}
	var sshConfig, cases strings.Builder
	for i, p := range c.baked.Nodes {
		n := &moveNode{Plan: p, ns: testenv.NewNetns(t, fmt.Sprintf("mv%d", i)), sshd: testenv.StartSSHD(t, "127.0.0.1")}
		n.root = testenv.ScratchBtrfs(t)
		os.MkdirAll(filepath.Join(n.root, "var/lib"), 0o755)
		if err := btrfsctl.Create(filepath.Join(n.root, "var/lib/lxc")); err != nil {
			t.Fatal(err)
		}
		// What nodeinit's boot leaves for nodeinit container.
		built, _ := json.Marshal(c.baked)
		who, _ := json.Marshal(plan.BootedNode{Name: p.Name, MAC: p.MAC})
		for path, data := range map[string][]byte{plan.BootedFile: built, plan.NodeFile: who} {
			os.MkdirAll(filepath.Dir(filepath.Join(n.root, path)), 0o755)
			if err := os.WriteFile(filepath.Join(n.root, path), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		testenv.Run(t, "ip", "-n", n.ns, "link", "set", "lo", "up")
		testenv.Run(t, "ip", "-n", n.ns, "link", "add", "eth0", "address", p.MAC, "type", "veth", "peer", "name", "x0")
		testenv.Run(t, "ip", "-n", n.ns, "link", "set", "x0", "up")
		testenv.Run(t, "ip", "-n", n.ns, "addr", "add", p.CIDR(), "dev", "eth0")
		c.nodes[p.Name] = n
		fmt.Fprintf(&sshConfig, "Host %s\n  HostName 127.0.0.1\n  Port %d\n  IdentityFile %s\n  UserKnownHostsFile %s\n  StrictHostKeyChecking yes\n",
			p.IP, n.sshd.Port, n.sshd.Identity, n.sshd.KnownHosts)
		fmt.Fprintf(&cases, "%d) root=%s ns=%s ;;\n", n.sshd.Port, n.root, n.ns)
	}
	c.sshCfg = filepath.Join(dir, "ssh_config")
	if err := os.WriteFile(c.sshCfg, []byte(sshConfig.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	// nodeenv NS ROOT CMD... runs CMD as on node: in the node's network
	// namespace with a sysfs of its own (LXC looks for the bridge there)
	// and the cgroups still mounted (CRIU's freezer), in a mount
	// namespace where /var/lib/lxc is the node's.
	c.nodeenv = filepath.Join(dir, "nodeenv")
	cg := filepath.Join(dir, "cgroup")
	os.Mkdir(cg, 0o700)
	if err := os.WriteFile(c.nodeenv, fmt.Appendf(nil, `#!/bin/sh
set -e
case "$1" in
--net) shift; mount -t sysfs sysfs /sys; mount --rbind %[1]s /sys/fs/cgroup; exec "$@" ;;
--mnt) shift; ns=$1 root=$2; shift 2
	mount --rbind /sys/fs/cgroup %[1]s
	mkdir -p /var/lib/lxc
	mount --bind "$root/var/lib/lxc" /var/lib/lxc
	exec nsenter --net=/run/netns/"$ns" "$0" --net "$@" ;;
*) exec unshare -m --propagation private "$0" --mnt "$@" ;;
esac
`, cg), 0o755); err != nil {
		t.Fatal(err)
	}
	// The node's nodeinit, found by the port the connection came to.
	c.cut = filepath.Join(dir, "CUT")
	c.wrapper = filepath.Join(dir, "nodeinit")
	if err := os.WriteFile(c.wrapper, fmt.Appendf(nil, `#!/bin/sh
case "${SSH_CONNECTION##* }" in
%s*) echo "no node on port ${SSH_CONNECTION##* }" >&2; exit 1 ;;
esac
sub=$2; shift 2
if [ "$sub" = receive ] && [ -e %s ] && [ "$2" = 2 ]; then
	head -c 50 | %s "$ns" "$root" %s container "$sub" --root "$root" "$@"
	exit $?
fi
exec %s "$ns" "$root" %s container "$sub" --root "$root" "$@"
`, cases.String(), c.cut, c.nodeenv, bin, c.nodeenv, bin), 0o755); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *moveCluster) move(t *testing.T, to, from string) (MoveReport, error) {
	m := &Move{Baked: c.baked, Container: "c-web", From: from, To: to, SSH: []string{"ssh", "-F", c.sshCfg}, Nodeinit: c.wrapper, Log: t.Logf}
	return m.Run(context.Background())
}

// has tells whether node holds c-web where LXC finds it.
func (c *moveCluster) has(node string) bool {
	_, err := os.Stat(filepath.Join(c.nodes[node].root, "var/lib/lxc/c-web/config"))
	return err == nil
}

// A container moves from node01 to node02 through the build host. A last
// pass cut on the way puts it back on node01; the retry moves it, and
// every node re-planned (the gateway's route follows); a move back
// removes the placement again.
func TestMove(t *testing.T) {
	c := newMoveCluster(t)
	nodes, cut := c.nodes, c.cut
	move := func(to, from string) (MoveReport, error) { return c.move(t, to, from) }
	has := c.has
	web := filepath.Join(nodes["node01"].root, "var/lib/lxc/c-web")
	for rel, data := range map[string]string{
		"config":             plan.AutostartMarker + "\nlxc.uts.name = c-web\nlxc.start.auto = 0\n",
		"rootfs/srv/index":   "hello\n",
		"rootfs/var/counter": "7\n",
	} {
		os.MkdirAll(filepath.Dir(filepath.Join(web, rel)), 0o755)
		if err := os.WriteFile(filepath.Join(web, rel), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gwRoute := func() string {
		return strings.TrimSpace(testenv.Run(t, "ip", "-n", nodes["gw"].ns, "-4", "route", "show", "10.0.3.10/32"))
	}

	// Cut on the way: back on node01, nothing on node02.
	if err := os.WriteFile(cut, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := move("node02", ""); err == nil || !strings.Contains(err.Error(), "c-web is back on node01") {
		t.Fatalf("a cut last pass: %v", err)
	}
	if !has("node01") || has("node02") {
		t.Fatalf("after a cut move: on node01 %v, on node02 %v; want node01 only", has("node01"), has("node02"))
	}
	os.Remove(cut)

	os.WriteFile(filepath.Join(web, "rootfs/var/counter"), []byte("8\n"), 0o644)
	r, err := move("node02", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("report: %+v", r)
	if has("node01") || !has("node02") {
		t.Fatalf("after the move: on node01 %v, on node02 %v; want node02 only", has("node01"), has("node02"))
	}
	if got, _ := os.ReadFile(filepath.Join(nodes["node02"].root, "var/lib/lxc/c-web/rootfs/var/counter")); string(got) != "8\n" {
		t.Errorf("node02's counter %q, want the last one, 8", got)
	}
	if strings.Join(r.Placed, " ") != "gw node01 node02" || len(r.NotPlaced) != 0 || r.Ran || r.First <= r.Last || r.Last == 0 {
		t.Errorf("report %+v: want placed on gw, node01, node02, not run, a smaller last pass", r)
	}
	for name, n := range nodes {
		if got, _ := os.ReadFile(filepath.Join(n.root, plan.PlacementFile)); !strings.HasSuffix(string(got), "\nc-web node02\n") {
			t.Errorf("%s's placement:\n%s", name, got)
		}
	}
	if got := gwRoute(); got != "10.0.3.10 via 192.168.142.12 dev eth0 proto boot onlink" && got != "10.0.3.10 via 192.168.142.12 dev eth0 onlink" {
		t.Errorf("the gateway's route to c-web: %q, want via node02", got)
	}
	conf, _ := os.ReadFile(filepath.Join(nodes["node02"].root, "var/lib/lxc/c-web/config"))
	if !strings.Contains(string(conf), "lxc.net.0.hwaddr = 00:16:3e:00:00:10\n") || !strings.Contains(string(conf), "lxc.start.auto = 1\n") {
		t.Errorf("c-web's config on node02 is not pinned there:\n%s", conf)
	}

	// Moving it again from where the config says is refused: it is not
	// there (the build host does not know the placement; --from tells).
	if _, err := move("node02", ""); err == nil {
		t.Error("a move from node01, which no longer has it, succeeded")
	}
	if !has("node02") {
		t.Fatal("a refused move took c-web off node02")
	}

	// And back: the config's node again, so no placement line.
	if _, err := move("node01", "node02"); err != nil {
		t.Fatal(err)
	}
	if !has("node01") || has("node02") {
		t.Fatalf("after the move back: on node01 %v, on node02 %v", has("node01"), has("node02"))
	}
	for name, n := range nodes {
		if got, _ := os.ReadFile(filepath.Join(n.root, plan.PlacementFile)); strings.Contains(string(got), "c-web") {
			t.Errorf("%s's placement after the move back:\n%s", name, got)
		}
	}
	if got := gwRoute(); !strings.HasPrefix(got, "10.0.3.10 via 192.168.142.11 ") {
		t.Errorf("the gateway's route to c-web after the move back: %q, want via node01", got)
	}
}

// runningWeb makes c-web on node a real container: a static busybox
// root whose init serves a counter on TCP port 7000 (each connection
// gets the next number, kept in /var/counter), on the veth its config
// pins as nodeinit's policy does, to the node's lxcbr0 (made in every
// node's namespace). It starts it on node and stops every node's copy
// when the test ends.
func runningWeb(t *testing.T, c *moveCluster, node string) {
	testenv.NeedTools(t, "lxc-start", "lxc-stop", "lxc-info")
	testenv.NeedFile(t, "/bin/busybox")
	if out, _ := exec.Command("ldd", "/bin/busybox").CombinedOutput(); !strings.Contains(string(out), "not a dynamic executable") {
		t.Skip("/bin/busybox is not static (Debian's busybox-static): the container's root has no libraries")
	}
	for _, n := range c.nodes {
		testenv.Run(t, "ip", "-n", n.ns, "link", "add", "lxcbr0", "type", "bridge")
		testenv.Run(t, "ip", "-n", n.ns, "addr", "add", "10.0.3.1/24", "dev", "lxcbr0")
		testenv.Run(t, "ip", "-n", n.ns, "link", "set", "lxcbr0", "up")
		t.Cleanup(func() { c.lxc(n, "stop", "-k").Run() })
	}
	web := filepath.Join(c.nodes[node].root, "var/lib/lxc/c-web")
	for rel, data := range map[string]string{
		"config": plan.AutostartMarker + `
lxc.uts.name = c-web
lxc.rootfs.path = dir:/var/lib/lxc/c-web/rootfs
lxc.init.cmd = /bin/init.sh
lxc.signal.halt = SIGTERM
lxc.apparmor.profile = unconfined
lxc.mount.auto = proc:mixed sys:ro
lxc.autodev = 1
lxc.start.auto = 1
lxc.net.0.type = veth
lxc.net.0.link = lxcbr0
lxc.net.0.flags = up
lxc.net.0.veth.pair = vc-c-web
lxc.net.0.hwaddr = 00:16:3e:00:00:10
lxc.net.0.ipv4.address = 10.0.3.10/24
lxc.net.0.ipv4.gateway = 10.0.3.1
`,
		"rootfs/bin/init.sh": `#!/bin/sh
trap 'kill $nc 2>/dev/null; exit 0' TERM
while true; do
	n=$(( $(cat /var/counter) + 1 ))
	echo $n | nc -l -p 7000 & nc=$!
	wait $nc && echo $n > /var/counter
done
`,
		"rootfs/var/counter": "0\n",
	} {
		p := filepath.Join(web, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"proc", "sys", "dev", "tmp"} {
		os.MkdirAll(filepath.Join(web, "rootfs", d), 0o755)
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(web, "rootfs/bin/busybox"), bb, 0o755)
	for _, l := range []string{"sh", "cat", "nc", "kill"} {
		os.Symlink("busybox", filepath.Join(web, "rootfs/bin", l))
	}
	if out, err := c.lxc(c.nodes[node], "start").CombinedOutput(); err != nil {
		t.Fatalf("lxc-start on %s: %v\n%s", node, err, out)
	}
}

// lxc runs LXC's lxc-VERB on node n's c-web as nodeinit runs it there.
func (c *moveCluster) lxc(n *moveNode, verb string, args ...string) *exec.Cmd {
	lxcPath := filepath.Join(n.root, "var/lib/lxc")
	return exec.Command(c.nodeenv, append([]string{n.ns, n.root, "lxc-" + verb, "-P", lxcPath, "-n", "c-web"}, args...)...)
}

// answers tells whether c-web's counter answers in node's network now
// (one connection, which counts).
func (c *moveCluster) answers(node string) bool {
	return testenv.InNetns(c.nodes[node].ns, func() error {
		_, err := readCounter()
		return err
	}) == nil
}

// readCounter takes the next number from c-web's counter.
func readCounter() (string, error) {
	conn, err := net.DialTimeout("tcp", "10.0.3.10:7000", 200*time.Millisecond)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(conn)
	if got := strings.TrimSpace(string(b)); err == nil && got != "" {
		return got, nil
	}
	return "", fmt.Errorf("read %q: %v", b, err)
}

// count reads the next number from c-web's counter, as a client in
// node's network would, waiting up to 20 s for it to answer.
func (c *moveCluster) count(t *testing.T, node string) string {
	t.Helper()
	var got string
	deadline := time.Now().Add(20 * time.Second)
	err := testenv.InNetns(c.nodes[node].ns, func() error {
		for {
			var err error
			if got, err = readCounter(); err == nil || time.Now().After(deadline) {
				return err
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	if err != nil {
		t.Fatalf("c-web's counter from %s: %v", node, err)
	}
	return got
}

// A running container serving a counter over TCP moves cold from
// node01 to node02: it is stopped, then started on node02 where the
// count goes on, and the move reports how long it was down.
func TestMoveRunning(t *testing.T) {
	c := newMoveCluster(t)
	runningWeb(t, c, "node01")
	for _, want := range []string{"1", "2"} {
		if got := c.count(t, "node01"); got != want {
			t.Fatalf("counter on node01: %q, want %q", got, want)
		}
	}
	r, err := c.move(t, "node02", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cold move: %+v", r)
	if !r.Ran || r.Down <= 0 || r.Routed < r.Down {
		t.Errorf("report %+v: want it ran, down for a while, routed after", r)
	}
	if got := c.count(t, "node02"); got != "3" {
		t.Errorf("counter on node02: %q, want 3 (the count goes on)", got)
	}
	if out, _ := c.lxc(c.nodes["node01"], "info", "-sH").CombinedOutput(); strings.Contains(string(out), "RUNNING") {
		t.Errorf("c-web still runs on node01: %s", out)
	}

	// Back, live where CRIU can: restored, or moved cold saying why.
	m := &Move{Baked: c.baked, Container: "c-web", From: "node02", To: "node01", Live: true, SSH: []string{"ssh", "-F", c.sshCfg}, Nodeinit: c.wrapper, Log: t.Logf}
	r, err = m.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("live move: %+v", r)
	if !r.Ran || r.Live == (r.NotLive != "") {
		t.Errorf("live move report %+v: want it ran, and either restored live or why not", r)
	}
	if !r.Live && !strings.Contains(r.NotLive, "CRIU") && !strings.Contains(r.NotLive, "lxc-checkpoint") {
		t.Errorf("a live move that was not says %q, not CRIU's reason", r.NotLive)
	}
	if got := c.count(t, "node01"); got != "4" {
		t.Errorf("counter on node01 after the live move: %q, want 4", got)
	}
}
