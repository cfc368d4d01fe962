package policy

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	"github.com/mkimage/mkimage/internal/cluster/plan"
)

// Report reads back from the kernel what is in place after Apply and logs
// one line per part, so the console shows the policy even on a root
// without nft or ip:
//
//	nodeinit: policy: ip_forward=1
//	nodeinit: policy: nftables table ip nodeinit: 6 rules (forward, policy drop: 5; postrouting: 1)
//	nodeinit: policy: route 192.168.0.0/24 via 10.0.2.2 dev eth0
//	nodeinit: policy: cpufreq: not available
//	nodeinit: policy: haproxy.cfg: 3 services
//	nodeinit: policy: bridge lxcbr0 up 10.0.3.1/24
//	nodeinit: policy: antispoof: c2 has no pinned address: not filtered
//	nodeinit: policy: antispoof: c3 has no pinned ip6: its IPv6 is held to its MAC only
//	nodeinit: policy: nftables table bridge nodeinit: 1 containers pinned, 0 frames dropped
//
// What differs from the plan says so on its line ("MISSING", "plan: 1").
// It returns how many parts differ from the plan.
func Report(env Env) int {
	if env.Log == nil {
		env.Log = func(string, ...any) {}
	}
	bad := 0
	for _, part := range []func(Env) (string, bool){reportForward, reportNetfilter, reportGovernor} {
		line, ok := part(env)
		env.Log("nodeinit: policy: %s", line)
		if !ok {
			bad++
		}
	}
	for _, r := range env.Node.Routes {
		line, ok := reportRoute(env.Node.MAC, r.Destination, r.Via, r.Dev)
		env.Log("nodeinit: policy: %s", line)
		if !ok {
			bad++
		}
	}
	if env.Node.HAProxyCfg != "" {
		line, ok := reportIngress(env)
		env.Log("nodeinit: policy: %s", line)
		if !ok {
			bad++
		}
	}
	if x := env.Node.LXC; x != nil {
		line, ok := reportBridge(x.Bridge, x.Address, x.Address6)
		env.Log("nodeinit: policy: %s", line)
		if !ok {
			bad++
		}
		lines, ok := reportAntispoof(x)
		for _, l := range lines {
			env.Log("nodeinit: policy: %s", l)
		}
		if !ok {
			bad++
		}
	}
	if env.Node.I2P != nil {
		line, ok := reportI2P(env)
		env.Log("nodeinit: policy: %s", line)
		if !ok {
			bad++
		}
	}
	return bad
}

func reportForward(env Env) (string, bool) {
	b, err := os.ReadFile(filepath.Join(env.Proc, "sys/net/ipv4/ip_forward"))
	if err != nil {
		return fmt.Sprintf("ip_forward: %v", err), false
	}
	got, want := strings.TrimSpace(string(b)), "0"
	if env.Node.IPForward {
		want = "1"
	}
	if got != want {
		return fmt.Sprintf("ip_forward=%s (plan: %s)", got, want), false
	}
	return "ip_forward=" + got, true
}

func reportNetfilter(env Env) (string, bool) {
	p := env.Node
	wantTable := len(p.Forward) > 0 || p.ForwardPolicy == "drop" || len(p.NAT) > 0
	c, err := nftables.New()
	if err != nil {
		return fmt.Sprintf("nftables: %v", err), !wantTable
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return fmt.Sprintf("nftables: listing tables: %v", err), !wantTable
	}
	i := slices.IndexFunc(tables, func(t *nftables.Table) bool { return t.Name == Table })
	if i < 0 {
		if wantTable {
			return fmt.Sprintf("nftables table ip %s: MISSING (plan: %d forward and %d NAT rules)", Table, len(p.Forward), len(p.NAT)), false
		}
		return fmt.Sprintf("nftables: no table ip %s (plan has no forward or NAT rules)", Table), true
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return fmt.Sprintf("nftables table ip %s: listing chains: %v", Table, err), false
	}
	total := 0
	var parts []string
	for _, ch := range chains {
		if ch.Table.Name != Table {
			continue
		}
		rules, err := c.GetRules(tables[i], ch)
		if err != nil {
			return fmt.Sprintf("nftables table ip %s chain %s: %v", Table, ch.Name, err), false
		}
		total += len(rules)
		desc := ch.Name
		if ch.Policy != nil && *ch.Policy == nftables.ChainPolicyDrop {
			desc += ", policy drop"
		}
		parts = append(parts, fmt.Sprintf("%s: %d", desc, len(rules)))
	}
	return fmt.Sprintf("nftables table ip %s: %d rules (%s)", Table, total, strings.Join(parts, "; ")), wantTable
}

func reportGovernor(env Env) (string, bool) {
	files, _ := filepath.Glob(filepath.Join(env.Sys, "devices/system/cpu/cpufreq/policy*/scaling_governor"))
	if len(files) == 0 {
		return "cpufreq: not available", true
	}
	var govs []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Sprintf("cpufreq: %v", err), false
		}
		govs = append(govs, strings.TrimSpace(string(b)))
	}
	slices.Sort(govs)
	govs = slices.Compact(govs)
	line := fmt.Sprintf("governor %s on %d policies", strings.Join(govs, ","), len(files))
	if g := env.Node.Governor; g != "" && (len(govs) != 1 || govs[0] != g) {
		return line + " (plan: " + g + ")", false
	}
	return line, true
}

// reportRoute finds the plan's route in the main table.
func reportRoute(mac, dst, via, dev string) (string, bool) {
	want := fmt.Sprintf("route %s", dst)
	if via != "" {
		want += " via " + via
	}
	var link netlink.Link
	var err error
	if dev != "" {
		link, err = netlink.LinkByName(dev)
	} else {
		link, err = linkByMAC(mac)
	}
	if err != nil {
		return fmt.Sprintf("%s: MISSING (%v)", want, err), false
	}
	name := link.Attrs().Name
	routes, err := netlink.RouteList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Sprintf("%s dev %s: %v", want, name, err), false
	}
	for _, r := range routes {
		d := "default"
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 || !r.Dst.IP.Equal(net.IPv4zero) {
				d = r.Dst.String()
			}
		}
		if d != dst {
			continue
		}
		if via != "" && !r.Gw.Equal(net.ParseIP(via)) {
			continue
		}
		return fmt.Sprintf("%s dev %s", want, name), true
	}
	return fmt.Sprintf("%s dev %s: MISSING", want, name), false
}

// reportBridge lists the bridge's addresses, IPv4 and IPv6 but not the
// kernel's IPv6 link-local one, and checks that it is up with each of
// cidrs (empty ones skipped).
func reportBridge(name string, cidrs ...string) (string, bool) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Sprintf("bridge %s: MISSING (%v)", name, err), false
	}
	state := "down"
	if l.Attrs().Flags&net.FlagUp != 0 {
		state = "up"
	}
	addrs, _ := netlink.AddrList(l, netlink.FAMILY_ALL)
	var as []string
	for _, a := range addrs {
		if !a.IP.IsLinkLocalUnicast() {
			as = append(as, a.IPNet.String())
		}
	}
	var want []string
	found := true
	for _, c := range cidrs {
		if c != "" {
			want = append(want, c)
			found = found && slices.Contains(as, c)
		}
	}
	line := fmt.Sprintf("bridge %s %s %s", name, state, strings.Join(as, " "))
	if !found || state != "up" {
		return strings.TrimSpace(line) + " (plan: up " + strings.Join(want, " ") + ")", false
	}
	return line, true
}

// reportIngress reads back the gateway's haproxy.cfg, in the root
// haproxy runs in.
func reportIngress(env Env) (string, bool) {
	r, where, err := reportRoot(env, plan.RunsHAProxy)
	if err != nil {
		return fmt.Sprintf("haproxy.cfg: %v", err), false
	}
	defer r.Close()
	in := inRoot(where)
	got, err := r.ReadFile(plan.HAProxyPath)
	switch {
	case err != nil:
		return fmt.Sprintf("haproxy.cfg%s MISSING (%v)", in, err), false
	case string(got) != env.Node.HAProxyCfg:
		return "haproxy.cfg" + in + " differs from the plan", false
	}
	return fmt.Sprintf("haproxy.cfg: %d services%s", strings.Count(env.Node.HAProxyCfg, "\nbackend svc_"), in), true
}
