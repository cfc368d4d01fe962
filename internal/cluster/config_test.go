package cluster

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/cluster/plan"
)

const base = `[cluster]
name = "t"
[network]
subnet = "192.168.142.0/24"
gateway = "192.168.142.1"
`

func TestParseErrors(t *testing.T) {
	node := func(name, mac, ip, role string) string {
		return "[[node]]\nname = \"" + name + "\"\nmac = \"" + mac + "\"\nip = \"" + ip + "\"\nrole = \"" + role + "\"\n"
	}
	ok1 := node("a", "00:1e:06:00:00:01", "192.168.142.11", "worker") // lines 6-10
	for _, tc := range []struct {
		name, src, want string
	}{
		{"unknown top key", "colour = 1\n" + base, "c.toml:1: unknown key \"colour\" at top level (expected one of: cluster, network, power, lxc, backup, node)"},
		{"unknown nested key", base + "ip_forwad = true\n", "c.toml:6: unknown key \"ip_forwad\" in [network] (expected one of: subnet, gateway, dns, ip_forward, route, role)"},
		{"unknown role table", base + "[network.role.wroker]\nip_forward = true\n", "c.toml:6: unknown key \"wroker\" in [network.role] (expected one of: worker, gateway, router)"},
		{"unknown node key", base + ok1 + "colour = \"red\"\n", "c.toml:11: unknown key \"colour\" in [node]"},
		{"syntax", base + "name = \n", "c.toml:6: "},
		{"wrong type", base + "[power]\nworker = 3\n", "c.toml:7: unknown governor \"3\""},
		{"wrong type bool", base + "[lxc]\nlxcfs = \"yes\"\n", "c.toml:7: incompatible types"},
		{"bad governor", base + "[power]\nworker = \"turbo\"\n", "c.toml:7: unknown governor \"turbo\" (expected performance, ondemand, powersave, schedutil, conservative)"},
		{"bad role", base + node("a", "00:1e:06:00:00:01", "192.168.142.11", "boss"), "c.toml:10: unknown role \"boss\" (expected worker, gateway, router)"},
		{"bad mac", base + node("a", "00:1e:06:00:01", "192.168.142.11", "worker"), "c.toml:8: malformed MAC \"00:1e:06:00:01\""},
		{"multicast mac", base + node("a", "01:1e:06:00:00:01", "192.168.142.11", "worker"), "c.toml:8: MAC \"01:1e:06:00:00:01\" is a multicast"},
		{"bad cidr", strings.Replace(base, "142.0/24", "142.0/33", 1), "c.toml:4: malformed IPv4 CIDR \"192.168.142.0/33\""},
		{"subnet host bits", strings.Replace(base, "142.0/24", "142.5/24", 1), "c.toml:4: subnet 192.168.142.5/24 has host bits set (expected 192.168.142.0/24)"},
		{"gateway outside", strings.Replace(base, "\"192.168.142.1\"", "\"192.168.143.1\"", 1), "c.toml:5: gateway 192.168.143.1 is outside the subnet 192.168.142.0/24"},
		{"ip outside", base + node("a", "00:1e:06:00:00:01", "192.168.1.11", "worker"), "c.toml:9: node a: IP 192.168.1.11 is outside the subnet 192.168.142.0/24"},
		{"ip is broadcast", base + node("a", "00:1e:06:00:00:01", "192.168.142.255", "worker"), "c.toml:9: node a: IP 192.168.142.255 is outside"},
		{"dup name", base + ok1 + node("a", "00:1e:06:00:00:02", "192.168.142.12", "worker"), "c.toml:12: duplicate node name \"a\" (also node 1, line 7)"},
		{"dup mac", base + ok1 + node("b", "00:1E:06:00:00:01", "192.168.142.12", "worker"), "c.toml:13: duplicate MAC 00:1e:06:00:00:01 (node a has it too)"},
		{"dup ip", base + ok1 + node("b", "00:1e:06:00:00:02", "192.168.142.11", "worker"), "c.toml:14: duplicate IP 192.168.142.11 (also node \"a\", line 9)"},
		{"missing mac", base + "[[node]]\nname = \"a\"\nip = \"192.168.142.11\"\nrole = \"worker\"\n", "c.toml:6: node a has no mac"},
		{"missing subnet", "[cluster]\nname = \"t\"\n[network]\n", "c.toml:3: [network] subnet is missing"},
		{"negated cidr bad", base + "[network.role.router]\n[[network.role.router.forward]]\ndestination = \"!192.168.0.0/160\"\naction = \"drop\"\n", "c.toml:8: malformed CIDR \"!192.168.0.0/160\""},
		{"bad action", base + "[network.role.router]\n[[network.role.router.forward]]\naction = \"allow\"\n", "c.toml:8: unknown action \"allow\" (expected accept, drop, reject)"},
		{"no action", base + "[network.role.router]\n[[network.role.router.forward]]\nin = \"eth0\"\n", "c.toml:7: forward rule has no action"},
		{"route no nexthop", base + "[[network.route]]\ndestination = \"10.0.0.0/8\"\n", "c.toml:6: route to 10.0.0.0/8 has neither via nor dev"},
		{"route via outside", base + "[[network.route]]\ndestination = \"10.0.0.0/8\"\nvia = \"10.1.1.1\"\n", "c.toml:8: route via 10.1.1.1: not in the subnet"},
		{"container ip outside", base + ok1 + "[lxc]\nbridge = \"lxcbr0\"\naddress = \"10.0.3.1/24\"\n[[lxc.container]]\nname = \"c\"\nnode = \"a\"\nip = \"10.0.4.2\"\n", "c.toml:17: container \"c\": IP 10.0.4.2 is outside the LXC network 10.0.3.0/24"},
		{"container on bridge ip", base + ok1 + "[lxc]\nbridge = \"lxcbr0\"\naddress = \"10.0.3.1/24\"\n[[lxc.container]]\nname = \"c\"\nnode = \"a\"\nip = \"10.0.3.1\"\n", "c.toml:17: container \"c\": IP 10.0.3.1 is outside the LXC network 10.0.3.0/24 or is the bridge's own address"},
		{"container unknown node", base + ok1 + "[lxc]\nbridge = \"lxcbr0\"\naddress = \"10.0.3.1/24\"\n[[lxc.container]]\nname = \"c\"\nnode = \"zz\"\nip = \"10.0.3.2\"\n", "c.toml:16: container \"c\": node \"zz\" is not in the inventory"},
		{"lxc overlaps subnet", base + "[lxc]\nbridge = \"lxcbr0\"\naddress = \"192.168.142.200/25\"\n", "c.toml:8: LXC network 192.168.142.128/25 overlaps the cluster subnet 192.168.142.0/24"},
		{"bad schedule", base + "[backup]\nschedule = \"every tuesday\"\nkeep = 3\n", "c.toml:7: bad schedule \"every tuesday\""},
		{"bad schedule time", base + "[backup]\nschedule = \"daily 25:00\"\nkeep = 3\n", "c.toml:7: bad time in schedule"},
		{"bad keep", base + "[backup]\nschedule = \"daily\"\nkeep = 0\n", "c.toml:8: [backup] keep = 0 (expected a count from 1 to 10000)"},
		{"bad ssh key", strings.Replace(base, "name = \"t\"", "name = \"t\"\nssh_authorized_keys = [\"ssh-dss AAAA\"]", 1), "c.toml:3: bad SSH public key"},
		{"bad timezone", strings.Replace(base, "name = \"t\"", "name = \"t\"\ntimezone = \"../etc\"", 1), "c.toml:3: bad timezone \"../etc\""},
		{"bad netboot", base + strings.Replace(ok1, "role", "netboot = \"pxe\"\nrole", 1), "c.toml:10: unknown netboot mode \"pxe\" (expected diskless, install)"},
		{"bad name", base + node("Node_1", "00:1e:06:00:00:01", "192.168.142.11", "worker"), "c.toml:7: bad name \"Node_1\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("c.toml", []byte(tc.src))
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error:\n%v\nwant it to contain:\n%s", err, tc.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not a *cluster.Error", err)
			}
		})
	}
}

func TestParseReportsAllErrors(t *testing.T) {
	src := base + "[[node]]\nname = \"a\"\nmac = \"00:1e:06:00:00:01\"\nip = \"192.168.1.1\"\nrole = \"worker\"\n" +
		"[[node]]\nname = \"a\"\nmac = \"00:1e:06:00:00:01\"\nip = \"192.168.142.12\"\nrole = \"worker\"\n"
	_, err := Parse("c.toml", []byte(src))
	if err == nil {
		t.Fatal("no error")
	}
	got := err.Error()
	want := "c.toml:9: node a: IP 192.168.1.1 is outside the subnet 192.168.142.0/24 (expected a host address in it)\n" +
		"c.toml:12: duplicate node name \"a\" (also node 1, line 7)\n" +
		"c.toml:13: duplicate MAC 00:1e:06:00:00:01 (node a has it too)"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func loadSeed(t testing.TB) *Config {
	t.Helper()
	c, err := Load("../../examples/seed-cluster.toml")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSeedExample(t *testing.T) {
	c := loadSeed(t)
	plans := c.Resolve()
	if len(plans) != 48 {
		t.Fatalf("%d nodes, want 48 (46 workers, gateway, router)", len(plans))
	}
	by := map[string]plan.Plan{}
	workers := 0
	for _, p := range plans {
		by[p.Name] = p
		if p.Role == "worker" {
			workers++
		}
	}
	if workers != 46 {
		t.Errorf("%d workers, want 46", workers)
	}
	n1 := by["node01"]
	if n1.CIDR() != "192.168.142.11/24" || n1.Gateway != "192.168.142.1" || n1.Governor != "ondemand" || !n1.IPForward {
		t.Errorf("node01 = %+v", n1)
	}
	if n1.LXC == nil || len(n1.LXC.Containers) != 1 || n1.LXC.Containers[0] != (plan.Container{Name: "haproxy", IP: "10.0.3.10/24", MAC: "00:16:3e:00:00:10"}) {
		t.Errorf("node01 lxc = %+v", n1.LXC)
	}
	if by["node03"].LXC == nil || len(by["node03"].LXC.Containers) != 0 {
		t.Errorf("node03 lxc = %+v", by["node03"].LXC)
	}
	gw := by["gw"]
	if gw.Gateway != "" || !gw.IPForward || len(gw.NAT) != 1 || gw.NAT[0] != (plan.NATRule{Out: "eth1", Source: "192.168.142.0/24"}) || gw.LXC != nil {
		t.Errorf("gw = %+v", gw)
	}
	r := by["mcbin"]
	if r.Gateway != "" || r.ForwardPolicy != "drop" || len(r.Forward) != 4 || r.Forward[3].Destination != "!192.168.0.0/16" {
		t.Errorf("mcbin = %+v", r)
	}
	for _, rt := range r.Routes {
		if rt.Via == "192.168.142.254" {
			t.Errorf("router routes via itself: %+v", rt)
		}
	}
	if len(n1.Routes) != 2 || n1.Routes[0] != (plan.Route{Destination: "192.168.0.0/24", Via: "192.168.142.254"}) {
		t.Errorf("node01 routes = %+v", n1.Routes)
	}
	if n1.Backup == nil || n1.Backup.Cron != "30 3 * * *" || n1.Backup.OnCalendar != "*-*-* 03:30:00" || n1.Backup.Keep != 7 {
		t.Errorf("backup = %+v", n1.Backup)
	}
}

func TestBakedRoundTrip(t *testing.T) {
	c := loadSeed(t)
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cluster.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := plan.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := b.ForMAC("00:1E:06:42:01:2E")
	if !ok || p.Name != "node46" || p.IP != "192.168.142.56" {
		t.Fatalf("ForMAC = %+v, %v", p, ok)
	}
	u := b.ForUnknown("AA:BB:CC:DD:EE:FF")
	if u.Name != "node-aabbccddeeff" || !u.DHCP() || u.LXC != nil || u.Gateway != "" || u.Governor != "ondemand" {
		t.Fatalf("ForUnknown = %+v", u)
	}
}

func FuzzParse(f *testing.F) {
	seed, err := os.ReadFile("../../examples/seed-cluster.toml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(base))
	f.Add([]byte(base + "[[node]]\nname=\"a\"\nmac=\"00:1e:06:00:00:01\"\nip=\"192.168.142.11\"\nrole=\"worker\"\n"))
	f.Add([]byte("node = [{name = \"a\", mac = \"x\"}]\n"))
	f.Add([]byte("[lxc]\naddress = \"10.0.3.1/32\"\n[[lxc.container]]\nip = \"10.0.3.1\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.toml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.toml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if _, err := json.Marshal(c); err != nil {
			t.Fatal(err)
		}
	})
}
