package cluster

import (
	"fmt"
	"slices"
	"strings"

	"github.com/mkimage/mkimage/internal/cluster/plan"
)

// RunsDaemons are what a container's runs may name: the node's daemons a
// container can run in the node's place. Each one's Debian package has
// the daemon's name.
var RunsDaemons = []string{plan.RunsHAProxy, plan.RunsI2PD}

// hosts tells whether the nodes of role r host containers ([lxc] roles;
// none listed: every role does).
func (x *LXC) hosts(r Role) bool {
	return len(x.Roles) == 0 || slices.Contains(x.Roles, r)
}

// DebianPackages are the packages the build installs in the container's
// rootfs = "debian:SUITE" root besides Debian's required set: Packages,
// then the packages of the daemons it runs (named as the daemons), each
// once, in that order.
func (ct Container) DebianPackages() []string {
	var out []string
	for _, p := range slices.Concat(ct.Packages, ct.Runs) {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// runsIn is the container that runs daemon for node, "" when the node
// runs it itself: the config's side of plan.Plan.RunsIn.
func (c *Config) runsIn(node Hostname, daemon string) string {
	if c.LXC == nil || node == "" {
		return ""
	}
	for _, ct := range c.LXC.Containers {
		if ct.Node == node && slices.Contains(ct.Runs, daemon) {
			return string(ct.Name)
		}
	}
	return ""
}

// validateRuns checks the runs of the i-th [[lxc.container]]: daemons it
// can run, each once; a root the build installs them in; no network of
// its own (it shares its node's); at most one container per node and
// daemon (runners: node + " " + daemon → container index); and a node
// that has work for the daemon: the ingress's haproxy.cfg, i2p tunnels.
// Whether the node hosts containers at all is checked with the others.
func (c *Config) validateRuns(bad func(line int, format string, a ...any), i int, ct Container, roleOf map[Hostname]Role, runners map[string]int) {
	if len(ct.Runs) == 0 {
		return
	}
	l := c.loc
	at := func(f string) int { return l.at("lxc.container", i, f) }
	runs := strings.Join(ct.Runs, ", ")
	var known []string
	for j, d := range ct.Runs {
		switch {
		case !slices.Contains(RunsDaemons, d):
			bad(at("runs"), "container %q: runs %q is not a daemon a container can run for its node (expected %s)", ct.Name, d, strings.Join(RunsDaemons, ", "))
		case slices.Contains(ct.Runs[:j], d):
			bad(at("runs"), "container %q: runs lists %s twice (expected each daemon once)", ct.Name, d)
		default:
			known = append(known, d)
		}
	}
	if ct.Rootfs.Scheme != "debian" {
		got := "it has no rootfs"
		if ct.Rootfs.Scheme != "" {
			got = fmt.Sprintf("not rootfs = %q", ct.Rootfs)
		}
		bad(at("rootfs"), "container %q runs %s, which needs rootfs = \"debian:SUITE\" (the build installs %s from Debian's packages; %s)", ct.Name, runs, runs, got)
	}
	for _, k := range []struct {
		key string
		set bool
	}{{"ip", ct.IP.IsValid()}, {"ip6", ct.IP6.IsValid()}, {"mac", ct.MAC != ""}} {
		if k.set {
			bad(at(k.key), "container %q runs %s for node %s and shares its network, so it has no %s of its own (expected no ip, ip6 or mac)", ct.Name, runs, ct.Node, k.key)
		}
	}
	role, ok := roleOf[ct.Node]
	if !ok {
		return // no node, or not in the inventory: said already
	}
	for _, d := range known {
		k := string(ct.Node) + " " + d
		if prev, dup := runners[k]; dup {
			bad(at("runs"), "container %q: node %s's %s is run by container %q already (line %d) (expected at most one container per node to run each daemon)", ct.Name, ct.Node, d, c.LXC.Containers[prev].Name, l.at("lxc.container", prev, "runs"))
			continue
		}
		runners[k] = i
		switch {
		case d == plan.RunsHAProxy && role != "gateway" && role != "":
			bad(at("runs"), "container %q runs haproxy for node %s, whose role is %s: only gateways (role = \"gateway\") get the ingress's haproxy.cfg, so it would have nothing to run (expected the container on a gateway, or no haproxy in runs)", ct.Name, ct.Node, role)
		case d == plan.RunsHAProxy && role == "gateway" && len(c.Services) == 0:
			bad(at("runs"), "container %q runs haproxy for gateway %s, but the config has no [[service]], so there is no haproxy.cfg for it to run (expected a [[service]], or no haproxy in runs)", ct.Name, ct.Node)
		case d == plan.RunsI2PD && !c.hasI2PTunnels(*c.nodeNamed(ct.Node)):
			bad(at("runs"), "container %q runs i2pd for node %s, which has no i2p tunnels: no [[service]] with i2p = true in a container on it and no [[i2p.client]] on it, so i2pd would have nothing to run (expected one of those, or no i2pd in runs)", ct.Name, ct.Node)
		}
	}
}

// ContainerPos is "file:line" of the rootfs key of the i-th
// [[lxc.container]] (its table's line without one), for errors found
// after parsing, such as an image that cannot be pulled.
func (c *Config) ContainerPos(i int) string {
	line := c.loc.at("lxc.container", i, "rootfs")
	if line == 0 {
		line = c.loc.at("lxc.container", i, "")
	}
	return fmt.Sprintf("%s:%d", c.file, line)
}

// ContainerNotes says, for each container whose root the build makes,
// where it comes from: "NAME on node NODE: oci:REF" or "NAME on node
// NODE: debian:SUITE + PACKAGES, configured at its first start", and
// what it runs for its node: "; runs haproxy, i2pd for node NODE
// (shares its network)".
func (c *Config) ContainerNotes() []string {
	if c.LXC == nil {
		return nil
	}
	var out []string
	for _, ct := range c.LXC.Containers {
		s := fmt.Sprintf("%s on node %s: %s", ct.Name, ct.Node, ct.Rootfs)
		switch ct.Rootfs.Scheme {
		case "":
			continue
		case "debian":
			if ps := ct.DebianPackages(); len(ps) > 0 {
				s += " + " + strings.Join(ps, " ")
			}
			s += ", configured at its first start"
		}
		if len(ct.Runs) > 0 {
			s += fmt.Sprintf("; runs %s for node %s (shares its network)", strings.Join(ct.Runs, ", "), ct.Node)
		}
		out = append(out, s)
	}
	return out
}
