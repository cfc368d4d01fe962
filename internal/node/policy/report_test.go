package policy

import (
	"context"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/testenv"
)

// TestReport applies each seed role's policy in a namespace of its own
// and checks that Report reads back exactly what is in place, and that it
// names what is missing when the policy was never applied.
func TestReport(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "ip")
	tests := []struct {
		node  string
		links [][]string // ip -n NS link add ... (MAC filled in for "eth0")
		apply bool
		want  []string
		bad   int
	}{
		{"mcbin", [][]string{{"eth0", "veth"}, {"eth1", "veth"}}, true, []string{
			"nodeinit: policy: ip_forward=1",
			"nodeinit: policy: nftables table ip nodeinit: 5 rules (forward, policy drop: 5)",
			"nodeinit: policy: cpufreq: not available",
			"nodeinit: policy: route default via 192.168.0.1 dev eth1",
			"nodeinit: policy: route 172.16.0.0/12 via 192.168.0.2 dev eth1",
		}, 0},
		{"node01", [][]string{{"eth0", "veth"}}, true, []string{
			"nodeinit: policy: ip_forward=1",
			"nodeinit: policy: nftables table ip nodeinit: 1 rules (postrouting: 1)",
			"nodeinit: policy: cpufreq: not available",
			"nodeinit: policy: route 192.168.0.0/24 via 192.168.142.254 dev eth0",
			"nodeinit: policy: route 172.16.0.0/12 via 192.168.142.254 dev eth0",
			"nodeinit: policy: bridge lxcbr0 up 10.0.3.1/24",
			"nodeinit: policy: antispoof: haproxy has no pinned ip6: its IPv6 is held to its MAC only",
			"nodeinit: policy: nftables table bridge nodeinit: 1 containers pinned, 0 frames dropped",
		}, 0},
		{"mcbin", [][]string{{"eth0", "veth"}, {"eth1", "veth"}}, false, []string{
			"nodeinit: policy: ip_forward=0 (plan: 1)",
			"nodeinit: policy: nftables table ip nodeinit: MISSING (plan: 4 forward and 0 NAT rules)",
			"nodeinit: policy: cpufreq: not available",
			"nodeinit: policy: route default via 192.168.0.1 dev eth1: MISSING",
			"nodeinit: policy: route 172.16.0.0/12 via 192.168.0.2 dev eth1: MISSING",
		}, 4},
		{"node01", [][]string{{"eth0", "veth"}}, false, []string{
			"nodeinit: policy: ip_forward=0 (plan: 1)",
			"nodeinit: policy: nftables table ip nodeinit: MISSING (plan: 0 forward and 1 NAT rules)",
			"nodeinit: policy: cpufreq: not available",
			"nodeinit: policy: route 192.168.0.0/24 via 192.168.142.254 dev eth0: MISSING",
			"nodeinit: policy: route 172.16.0.0/12 via 192.168.142.254 dev eth0: MISSING",
			"nodeinit: policy: bridge lxcbr0: MISSING (Link not found)",
			"nodeinit: policy: antispoof: haproxy has no pinned ip6: its IPv6 is held to its MAC only",
			"nodeinit: policy: nftables table bridge nodeinit: MISSING (plan: 1 containers pinned)",
		}, 6},
	}
	for i, tt := range tests {
		p := seedPlan(t, tt.node)
		ns := testenv.NewNetns(t, "rep"+string(rune('a'+i)))
		if tt.node == "node01" {
			needBridgeNftables(t, ns) // its container haproxy is pinned
		}
		for j, l := range tt.links {
			args := []string{"ip", "-n", ns, "link", "add", l[0]}
			if j == 0 {
				args = append(args, "address", p.MAC)
			}
			sh(t, append(args, "type", l[1], "peer", "name", "p"+l[0])...)
		}
		env := Env{Root: t.TempDir(), Proc: "/proc", Sys: t.TempDir(), Node: p}
		if tt.apply {
			if err := testenv.InNetns(ns, func() error { return Apply(context.Background(), env) }); err != nil {
				t.Fatalf("%s: Apply: %v", tt.node, err)
			}
		}
		log := &lines{}
		env.Log = log.logf
		bad := 0
		testenv.InNetns(ns, func() error { bad = Report(env); return nil })
		if got, want := strings.Join(log.l, "\n"), strings.Join(tt.want, "\n"); got != want {
			t.Errorf("%s (applied %v): got\n%s\nwant\n%s", tt.node, tt.apply, got, want)
		}
		if bad != tt.bad {
			t.Errorf("%s (applied %v): %d parts differ, want %d", tt.node, tt.apply, bad, tt.bad)
		}
	}
}
