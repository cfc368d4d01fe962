package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/cluster/plan"
	"github.com/mkimage/mkimage/internal/testenv"
)

// A gateway whose ingress reaches web through node a is re-planned live
// as web moves to b (the route goes through b) and then onto the
// gateway itself (no route; web's config pinned, its antispoof chain in).
func TestReplan(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "ip", "nft")
	ns := testenv.NewNetns(t, "replan")
	needBridgeNftables(t, ns)
	const mac = "02:00:00:00:00:01"
	sh(t, "ip", "-n", ns, "link", "add", "eth0", "address", mac, "type", "veth", "peer", "name", "x0")
	sh(t, "ip", "-n", ns, "addr", "add", "192.168.1.1/24", "dev", "eth0")
	sh(t, "ip", "-n", ns, "link", "set", "x0", "up")
	root := t.TempDir()
	conf := filepath.Join(root, "var/lib/lxc/web/config")
	os.MkdirAll(filepath.Dir(conf), 0o755)
	if err := os.WriteFile(conf, []byte(plan.AutostartMarker+"\nlxc.uts.name = web\nlxc.start.auto = 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lxc := func(cts ...plan.Container) *plan.LXC {
		return &plan.LXC{Bridge: "lxcbr0", Address: "10.0.3.1/24", Network: "veth", Containers: cts}
	}
	web := plan.Container{Name: "web", IP: "10.0.3.10/24", MAC: "00:16:3e:00:00:10"}
	gw := func(via string, cts ...plan.Container) plan.Plan {
		p := plan.Plan{Name: "gw", MAC: mac, IP: "192.168.1.1", HAProxyCfg: "x", LXC: lxc(cts...),
			Routes: []plan.Route{{Destination: "172.16.0.0/12", Via: "192.168.1.254"}}}
		if via != "" {
			p.Routes = append(p.Routes, plan.Route{Destination: "10.0.3.10/32", Via: via})
		}
		return p
	}
	routes := func() string {
		return strings.TrimSpace(sh(t, "ip", "-n", ns, "-4", "route", "show", "proto", "boot"))
	}
	var log lines
	steps := []struct {
		before, after plan.Plan
		routes        string
		pinned        bool
	}{
		{plan.Plan{Name: "gw", MAC: mac}, gw("192.168.1.2"), "10.0.3.10 via 192.168.1.2 dev eth0 onlink \n172.16.0.0/12 via 192.168.1.254 dev eth0 onlink", false},
		{gw("192.168.1.2"), gw("192.168.1.3"), "10.0.3.10 via 192.168.1.3 dev eth0 onlink \n172.16.0.0/12 via 192.168.1.254 dev eth0 onlink", false},
		{gw("192.168.1.3"), gw("", web), "172.16.0.0/12 via 192.168.1.254 dev eth0 onlink", true},
	}
	for i, s := range steps {
		env := Env{Root: root, Proc: "/proc", Sys: t.TempDir(), Node: s.after, Log: log.logf}
		if err := testenv.InNetns(ns, func() error { return Replan(env, s.before) }); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := routes(); got != s.routes {
			t.Errorf("step %d: routes\n%s\nwant\n%s", i, got, s.routes)
		}
		data, _ := os.ReadFile(conf)
		ruleset := sh(t, "ip", "netns", "exec", ns, "nft", "list", "ruleset")
		if strings.Contains(ruleset, "chain ct-web") != s.pinned {
			t.Errorf("step %d: no antispoof chain for web:\n%s", i, ruleset)
		}
		if pinned := strings.Contains(string(data), "lxc.net.0.hwaddr = 00:16:3e:00:00:10\n") && strings.Contains(string(data), "lxc.start.auto = 1\n"); pinned != s.pinned {
			t.Errorf("step %d: web's config pinned %v, want %v:\n%s", i, pinned, s.pinned, data)
		}
	}
	if l := strings.Join(log.l, "\n"); !strings.Contains(l, "route 10.0.3.10/32 via 192.168.1.2 deleted") || !strings.Contains(l, "route 10.0.3.10/32 via 192.168.1.3\n") {
		t.Errorf("log:\n%s", l)
	}
}
