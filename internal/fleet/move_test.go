package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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

// A container moves from node01 to node02 through the build host: the
// real nodeinit on each node (in its own root and network namespace,
// reached through its own sshd), the real btrfs, rsync and ssh. A last
// pass cut on the way puts it back on node01; the retry moves it, and
// every node re-planned (the gateway's route follows); a move back
// removes the placement again.
func TestMove(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "btrfs", "mkfs.btrfs", "rsync", "ssh", "ip", "nft", "go", "head")
	cfg, err := cluster.Parse("move.toml", []byte(moveConfig))
	if err != nil {
		t.Fatal(err)
	}
	baked := cfg.Bake()
	dir := t.TempDir()
	bin := filepath.Join(dir, "nodeinit.bin")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/mkimage/mkimage/cmd/nodeinit").CombinedOutput(); err != nil {
		t.Fatalf("building nodeinit: %v\n%s", err, out)
	}
	nodes := map[string]*moveNode{}
	var sshConfig, cases strings.Builder
	for i, p := range baked.Nodes {
		n := &moveNode{Plan: p, ns: testenv.NewNetns(t, fmt.Sprintf("mv%d", i)), sshd: testenv.StartSSHD(t, "127.0.0.1")}
		n.root = testenv.ScratchBtrfs(t)
		os.MkdirAll(filepath.Join(n.root, "var/lib"), 0o755)
		if err := btrfsctl.Create(filepath.Join(n.root, "var/lib/lxc")); err != nil {
			t.Fatal(err)
		}
		// What nodeinit's boot leaves for nodeinit container.
		built, _ := json.Marshal(baked)
		who, _ := json.Marshal(plan.BootedNode{Name: p.Name, MAC: p.MAC})
		for path, data := range map[string][]byte{plan.BootedFile: built, plan.NodeFile: who} {
			os.MkdirAll(filepath.Dir(filepath.Join(n.root, path)), 0o755)
			if err := os.WriteFile(filepath.Join(n.root, path), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		testenv.Run(t, "ip", "-n", n.ns, "link", "add", "eth0", "address", p.MAC, "type", "veth", "peer", "name", "x0")
		testenv.Run(t, "ip", "-n", n.ns, "link", "set", "x0", "up")
		testenv.Run(t, "ip", "-n", n.ns, "addr", "add", p.CIDR(), "dev", "eth0")
		nodes[p.Name] = n
		fmt.Fprintf(&sshConfig, "Host %s\n  HostName 127.0.0.1\n  Port %d\n  IdentityFile %s\n  UserKnownHostsFile %s\n  StrictHostKeyChecking yes\n",
			p.IP, n.sshd.Port, n.sshd.Identity, n.sshd.KnownHosts)
		fmt.Fprintf(&cases, "%d) root=%s ns=%s ;;\n", n.sshd.Port, n.root, n.ns)
	}
	sshCfg := filepath.Join(dir, "ssh_config")
	if err := os.WriteFile(sshCfg, []byte(sshConfig.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	// The node's nodeinit, found by the port the connection came to;
	// with CUT present a receive takes only the stream's first bytes.
	cut := filepath.Join(dir, "CUT")
	wrapper := filepath.Join(dir, "nodeinit")
	if err := os.WriteFile(wrapper, fmt.Appendf(nil, `#!/bin/sh
case "${SSH_CONNECTION##* }" in
%s*) echo "no node on port ${SSH_CONNECTION##* }" >&2; exit 1 ;;
esac
sub=$2; shift 2
if [ "$sub" = receive ] && [ -e %s ] && [ "$2" = 2 ]; then
	head -c 50 | ip netns exec "$ns" %s container "$sub" --root "$root" "$@"
	exit $?
fi
exec ip netns exec "$ns" %s container "$sub" --root "$root" "$@"
`, cases.String(), cut, bin, bin), 0o755); err != nil {
		t.Fatal(err)
	}

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
	move := func(to, from string) (MoveReport, error) {
		m := &Move{Baked: baked, Container: "c-web", From: from, To: to, SSH: []string{"ssh", "-F", sshCfg}, Nodeinit: wrapper, Log: t.Logf}
		return m.Run(context.Background())
	}
	has := func(node string) bool {
		_, err := os.Stat(filepath.Join(nodes[node].root, "var/lib/lxc/c-web/config"))
		return err == nil
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
