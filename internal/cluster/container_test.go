package cluster

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/cluster/plan"
)

// runsCt is a [[lxc.container]] built from Debian packages that runs
// daemons (runs, the TOML array's inside) for node, with extra lines.
func runsCt(name, node, runs, extra string) string {
	return fmt.Sprintf("[[lxc.container]]\nname = %q\nnode = %q\nrootfs = \"debian:bookworm\"\nruns = [%s]\n%s", name, node, runs, extra)
}

func TestRunsErrors(t *testing.T) {
	edge := func(runs, extra string) string { return runsCt("edge", "gw", runs, extra) }
	for _, tc := range []struct {
		name, src string
		at        string // the error's line: the last line of src containing at
		want      string
	}{
		{"unknown daemon", svcBase + edge(`"haproxy", "nginx"`, "") + webSvc,
			"runs =", `container "edge": runs "nginx" is not a daemon a container can run for its node (expected haproxy, i2pd)`},
		{"daemon twice", svcBase + edge(`"haproxy", "haproxy"`, "") + webSvc,
			"runs =", `container "edge": runs lists haproxy twice (expected each daemon once)`},
		{"oci rootfs", svcBase + strings.Replace(edge(`"haproxy"`, ""), "debian:bookworm", "oci:r.example/haproxy:2", 1) + webSvc,
			"rootfs =", `container "edge" runs haproxy, which needs rootfs = "debian:SUITE" (the build installs haproxy from Debian's packages; not rootfs = "oci:r.example/haproxy:2")`},
		{"no rootfs", svcBase + strings.Replace(edge(`"haproxy", "i2pd"`, ""), "rootfs = \"debian:bookworm\"\n", "", 1) + webSvc + "i2p = true\n" + "[i2p]\n" + i2pClient("web", `nodes = ["gw"]`, "web", 8081),
			"[[lxc.container]]", `container "edge" runs haproxy, i2pd, which needs rootfs = "debian:SUITE" (the build installs haproxy, i2pd from Debian's packages; it has no rootfs)`},
		{"ip", svcBase + edge(`"haproxy"`, "ip = \"10.0.3.30\"\n") + webSvc,
			"ip =", `container "edge" runs haproxy for node gw and shares its network, so it has no ip of its own (expected no ip, ip6 or mac)`},
		{"ip6", svcBase + edge(`"haproxy"`, "ip6 = \"fd00:5::30\"\n") + webSvc,
			"ip6 =", `container "edge" runs haproxy for node gw and shares its network, so it has no ip6 of its own (expected no ip, ip6 or mac)`},
		{"mac", svcBase + edge(`"haproxy"`, "mac = \"00:16:3e:00:00:30\"\n") + webSvc,
			"mac =", `container "edge" runs haproxy for node gw and shares its network, so it has no mac of its own (expected no ip, ip6 or mac)`},
		{"two run haproxy on one node", svcBase + edge(`"haproxy"`, "") + runsCt("edge2", "gw", `"haproxy"`, "") + webSvc,
			"runs =", `container "edge2": node gw's haproxy is run by container "edge" already (line 36) (expected at most one container per node to run each daemon)`},
		{"haproxy on a worker", svcBase + runsCt("edge", "node01", `"haproxy"`, "") + webSvc,
			"runs =", `container "edge" runs haproxy for node node01, whose role is worker: only gateways (role = "gateway") get the ingress's haproxy.cfg, so it would have nothing to run (expected the container on a gateway, or no haproxy in runs)`},
		{"haproxy without services", svcBase + edge(`"haproxy"`, ""),
			"runs =", `container "edge" runs haproxy for gateway gw, but the config has no [[service]], so there is no haproxy.cfg for it to run (expected a [[service]], or no haproxy in runs)`},
		{"i2pd without tunnels", svcBase + runsCt("tunnel", "node02", `"i2pd"`, "") + webSvc + "i2p = true\n",
			"runs =", `container "tunnel" runs i2pd for node node02, which has no i2p tunnels: no [[service]] with i2p = true in a container on it and no [[i2p.client]] on it, so i2pd would have nothing to run (expected one of those, or no i2pd in runs)`},
		{"i2pd on the gateway without tunnels", svcBase + edge(`"haproxy", "i2pd"`, "") + webSvc + "i2p = true\n",
			"runs =", `container "edge" runs i2pd for node gw, which has no i2p tunnels`},
		{"node does not host containers", strings.Replace(svcBase, "address = \"10.0.3.1/24\"\n", "address = \"10.0.3.1/24\"\nroles = [\"worker\"]\n", 1) + edge(`"haproxy"`, "") + webSvc,
			"node = \"gw\"", `container "edge": node "gw" has role gateway, which does not host containers (lxc roles: [worker])`},
		{"service in it", svcBase + edge(`"haproxy"`, "") + webSvc + "[[service]]\nname = \"x\"\ncontainer = \"edge\"\nport = 8404\nprotocol = \"tcp\"\npublic_port = 8404\n",
			"container = \"edge\"", `service "x": container "edge" runs haproxy for node gw and shares its network: it has no address of its own for the ingress to route to (expected a container with ip = ...)`},
		{"the others still need an ip", svcBase + edge(`"haproxy"`, "") + "[[lxc.container]]\nname = \"bare\"\nnode = \"node01\"\n" + webSvc,
			"name = \"bare\"", `container "bare" has no ip (expected an address in 10.0.3.0/24)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i := strings.LastIndex(tc.src, tc.at)
			if i < 0 {
				t.Fatalf("%q is not in the config", tc.at)
			}
			line := strings.Count(tc.src[:i], "\n") + 1
			if tc.at == "name = \"bare\"" {
				line-- // the table's line: it has no ip key
			}
			want := fmt.Sprintf("c.toml:%d: %s", line, tc.want)
			_, err := Parse("c.toml", []byte(tc.src))
			if err == nil {
				t.Fatalf("no error, want %q", want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, want)
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != 1 {
				t.Errorf("%d errors, want 1:\n%v", n, err)
			}
		})
	}
}

// TestRuns: containers that run the gateway's haproxy and node01's i2pd
// bake with their runs and no address, no route or backend leads to
// them, and config check's notes and service lines say where the
// daemons run.
func TestRuns(t *testing.T) {
	src := svcBase + runsCt("edge", "gw", `"haproxy"`, "") +
		runsCt("tunnel", "node01", `"i2pd"`, "packages = [\"i2pd\", \"curl\"]\n") +
		runsCt("tunnel2", "node02", `"i2pd"`, "") +
		webSvc + "i2p = true\n" +
		"[[service]]\nname = \"blog\"\ncontainer = \"c-blog\"\nport = 443\nprotocol = \"tls\"\nhosts = [\"blog.example.org\"]\n" +
		// node02's only tunnel is a client whose address is not known
		// yet: planned later, so its i2pd container is no error.
		"[i2p]\n" + i2pClient("web", `nodes = ["node02"]`, "web", 8081)
	c, _, b := parseBaked(t, src)
	by := map[string]plan.Plan{}
	for _, p := range b.Nodes {
		by[p.Name] = p
	}
	for _, tc := range []struct {
		node string
		want []plan.Container
	}{
		{"gw", []plan.Container{{Name: "edge", Runs: []string{"haproxy"}}}},
		{"node01", []plan.Container{{Name: "c-web", IP: "10.0.3.10/24"}, {Name: "tunnel", Runs: []string{"i2pd"}}}},
		{"node02", []plan.Container{{Name: "c-blog", IP: "10.0.3.11/24"}, {Name: "tunnel2", Runs: []string{"i2pd"}}}},
	} {
		p := by[tc.node]
		if p.LXC == nil || !reflect.DeepEqual(p.LXC.Containers, tc.want) {
			t.Errorf("%s: baked containers %+v, want %+v", tc.node, p.LXC, tc.want)
		}
	}
	for _, tc := range []struct{ node, daemon, want string }{
		{"gw", plan.RunsHAProxy, "edge"}, {"gw", plan.RunsI2PD, ""},
		{"node01", plan.RunsI2PD, "tunnel"}, {"node01", plan.RunsHAProxy, ""},
		{"node02", plan.RunsI2PD, "tunnel2"},
	} {
		p := by[tc.node]
		if got := p.RunsIn(tc.daemon); got != tc.want {
			t.Errorf("%s: RunsIn(%s) = %q, want %q", tc.node, tc.daemon, got, tc.want)
		}
	}
	// The gateway routes to the services' containers only.
	var rs []string
	for _, r := range by["gw"].Routes {
		rs = append(rs, r.Destination+" via "+r.Via)
	}
	if got, want := strings.Join(rs, ","), "10.0.3.10/32 via 192.168.142.11,10.0.3.11/32 via 192.168.142.12"; got != want {
		t.Errorf("gw routes %q, want %q", got, want)
	}
	if got, want := by["node01"].I2P, (&plan.I2P{Servers: []plan.I2PServer{{Service: "web", Type: "http", Host: "10.0.3.10", Port: 8080, HostOverride: "www.example.org"}}}); !reflect.DeepEqual(got, want) {
		t.Errorf("node01 i2p %+v, want %+v", got, want)
	}
	for _, r := range c.IngressRoutes() {
		if !r.Backend.Addr().IsValid() || r.Container == "edge" || r.Container == "tunnel" {
			t.Errorf("route %+v", r)
		}
	}

	lines := reached(c)
	wantLines := []string{
		"web: http://www.example.org/ → gateway gw:80 (haproxy in container edge on gw) → c-web 10.0.3.10:8080 on node01",
		"web: i2p (address made on node01 at first boot) → i2pd in container tunnel on node01 → c-web 10.0.3.10:8080 on node01",
		"blog: tls blog.example.org (SNI) → gateway gw:443 (haproxy in container edge on gw) → c-blog 10.0.3.11:443 on node02",
	}
	if strings.Join(lines, "\n") != strings.Join(wantLines, "\n") {
		t.Errorf("Reached:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(wantLines, "\n"))
	}
	notes := []string{
		"edge on node gw: debian:bookworm + haproxy, configured at its first start; runs haproxy for node gw (shares its network)",
		"tunnel on node node01: debian:bookworm + i2pd curl, configured at its first start; runs i2pd for node node01 (shares its network)",
		"tunnel2 on node node02: debian:bookworm + i2pd, configured at its first start; runs i2pd for node node02 (shares its network)",
	}
	if got := c.ContainerNotes(); !reflect.DeepEqual(got, notes) {
		t.Errorf("notes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(notes, "\n"))
	}
}

func TestDebianPackages(t *testing.T) {
	for _, tc := range []struct {
		packages, runs, want []string
	}{
		{nil, nil, nil},
		{[]string{"nginx"}, nil, []string{"nginx"}},
		{nil, []string{"i2pd", "haproxy"}, []string{"i2pd", "haproxy"}},
		{[]string{"curl", "haproxy"}, []string{"haproxy", "i2pd"}, []string{"curl", "haproxy", "i2pd"}},
		{[]string{"curl", "curl"}, []string{"i2pd"}, []string{"curl", "i2pd"}},
	} {
		ct := Container{Packages: tc.packages, Runs: tc.runs}
		if got := ct.DebianPackages(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("packages %q, runs %q: %q, want %q", tc.packages, tc.runs, got, tc.want)
		}
		if len(tc.packages) > 0 && tc.packages[0] != ct.Packages[0] {
			t.Errorf("Packages changed: %q", ct.Packages)
		}
	}
}
