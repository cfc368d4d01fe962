package cluster

import (
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"strings"
)

// validate checks what the value types cannot check alone: required
// values, uniqueness and that addresses fall in their networks.
func (c *Config) validate() []*Error {
	var errs []*Error
	bad := func(line int, format string, a ...any) {
		errs = append(errs, &Error{c.file, line, fmt.Sprintf(format, a...)})
	}
	l := c.loc

	if c.Cluster.Name == "" {
		bad(l.first("cluster"), "[cluster] name is missing (expected a name like \"seed\")")
	}
	subnet := c.Network.Subnet.Prefix
	switch {
	case !subnet.IsValid():
		bad(l.first("network"), "[network] subnet is missing (expected a CIDR like 192.168.142.0/24)")
		subnet = netip.Prefix{}
	case subnet.Masked() != subnet:
		bad(l.first("network.subnet"), "subnet %s has host bits set (expected %s)", subnet, subnet.Masked())
		subnet = subnet.Masked()
	}
	hostIn := func(p netip.Prefix, a netip.Addr) bool {
		if !p.IsValid() || !p.Contains(a) {
			return false
		}
		if p.Bits() >= 31 {
			return true
		}
		return a != p.Masked().Addr() && a != broadcast(p)
	}
	if gw := c.Network.Gateway.Addr; gw.IsValid() && subnet.IsValid() && !hostIn(subnet, gw) {
		bad(l.first("network.gateway"), "gateway %s is outside the subnet %s (expected a host address in it)", gw, subnet)
	}

	checkRoute := func(key string, i int, r Route) {
		if !r.Destination.IsValid() {
			bad(l.at(key, i, ""), "route has no destination (expected a CIDR or \"default\")")
		}
		if !r.Via.IsValid() && r.Dev == "" {
			bad(l.at(key, i, ""), "route to %s has neither via nor dev (expected at least one)", r.Destination)
		}
		if r.Via.IsValid() && r.Dev == "" && subnet.IsValid() && !subnet.Contains(r.Via.Addr) {
			bad(l.at(key, i, "via"), "route via %s: not in the subnet %s and no dev given (expected a next hop in the subnet, or dev)", r.Via, subnet)
		}
	}
	for i, r := range c.Network.Routes {
		checkRoute("network.route", i, r)
	}
	for _, role := range Roles {
		rn := c.Network.Role.get(Role(role))
		if rn == nil {
			continue
		}
		pre := "network.role." + role
		for i, r := range rn.Routes {
			checkRoute(pre+".route", i, r)
		}
		for i, f := range rn.Forward {
			if f.Action == "" {
				bad(l.at(pre+".forward", i, ""), "forward rule has no action (expected accept, drop or reject)")
			}
		}
	}

	names := map[Hostname]int{}
	macs := map[MAC]string{}
	serials := map[SerialNumber]int{}
	cards := map[CardSerial]int{}
	ips := map[netip.Addr]int{}
	roleOf := map[Hostname]Role{}
	for i, n := range c.Nodes {
		at := func(f string) int { return l.at("node", i, f) }
		id := fmt.Sprintf("node %d", i+1)
		if n.Name == "" {
			bad(at(""), "%s has no name (expected name = \"node01\")", id)
		} else {
			id = "node " + string(n.Name)
			if prev, dup := names[n.Name]; dup {
				bad(at("name"), "duplicate node name %q (also node %d, line %d)", n.Name, prev+1, l.at("node", prev, "name"))
			}
			names[n.Name] = i
			roleOf[n.Name] = n.Role
		}
		if n.MAC == "" && n.SerialNumber == "" && n.CardSerial == "" {
			bad(at(""), "%s has no mac, serial_number or card_serial (expected at least one, like mac = \"00:1e:06:aa:bb:cc\")", id)
		}
		if n.MAC != "" {
			if prev, dup := macs[n.MAC]; dup {
				bad(at("mac"), "duplicate MAC %s (%s has it too)", n.MAC, prev)
			} else {
				macs[n.MAC] = id
			}
		}
		// A serial names one node only: a second node with it could
		// never be told apart at first boot.
		if n.SerialNumber != "" {
			if prev, dup := serials[n.SerialNumber]; dup {
				bad(at("serial_number"), "duplicate serial_number %q (also node %q, line %d)", n.SerialNumber, c.Nodes[prev].Name, l.at("node", prev, "serial_number"))
			} else {
				serials[n.SerialNumber] = i
			}
		}
		if n.CardSerial != "" {
			if prev, dup := cards[n.CardSerial]; dup {
				bad(at("card_serial"), "duplicate card_serial %s (also node %q, line %d)", n.CardSerial, c.Nodes[prev].Name, l.at("node", prev, "card_serial"))
			} else {
				cards[n.CardSerial] = i
			}
		}
		if n.Netboot != "" && n.MAC == "" {
			bad(at("netboot"), "%s: netboot = %q needs the node's mac (U-Boot asks the server for its files by MAC)", id, n.Netboot)
		}
		if !n.IP.IsValid() {
			bad(at(""), "%s has no ip (expected an address in %s)", id, subnet)
		} else {
			if prev, dup := ips[n.IP.Addr]; dup {
				bad(at("ip"), "duplicate IP %s (also node %q, line %d)", n.IP, c.Nodes[prev].Name, l.at("node", prev, "ip"))
			}
			ips[n.IP.Addr] = i
			if subnet.IsValid() && !hostIn(subnet, n.IP.Addr) {
				bad(at("ip"), "%s: IP %s is outside the subnet %s (expected a host address in it)", id, n.IP, subnet)
			}
		}
		if n.Role == "" {
			bad(at(""), "%s has no role (expected one of %s)", id, strings.Join(Roles, ", "))
		}
	}

	if x := c.LXC; x != nil {
		lxcNet := x.Address.Masked()
		switch {
		case x.Bridge == "":
			bad(l.first("lxc"), "[lxc] bridge is missing (expected bridge = \"lxcbr0\")")
		}
		switch {
		case !x.Address.IsValid():
			bad(l.first("lxc"), "[lxc] address is missing (expected the bridge address with prefix, like 10.0.3.1/24)")
		case !hostIn(lxcNet, x.Address.Addr()):
			bad(l.first("lxc.address"), "[lxc] address %s is not a host address (expected like 10.0.3.1/24)", x.Address)
		case subnet.IsValid() && lxcNet.Overlaps(subnet):
			bad(l.first("lxc.address"), "LXC network %s overlaps the cluster subnet %s (expected a separate network)", lxcNet, subnet)
		}
		// IPv6 is optional: address6 gives the bridge its address and
		// prefix, and only then may containers have an ip6 in it.
		lxcNet6 := x.Address6.Masked()
		hostIn6 := func(a netip.Addr) bool {
			// The prefix's all-zero host is the Subnet-Router anycast
			// address (RFC 4291), not a host's, except in a /127 or /128.
			return lxcNet6.IsValid() && lxcNet6.Contains(a) && (a != lxcNet6.Addr() || lxcNet6.Bits() >= 127)
		}
		if x.Address6.IsValid() && !hostIn6(x.Address6.Addr()) {
			bad(l.first("lxc.address6"), "[lxc] address6 %s is the prefix's Subnet-Router anycast address, not a host address (expected like fd00:5::1/64)", x.Address6)
		}
		cnames := map[Hostname]int{}
		cips := map[netip.Addr]int{}
		runners := map[string]int{}
		for i, ct := range x.Containers {
			at := func(f string) int { return l.at("lxc.container", i, f) }
			uniqueName(bad, l, cnames, "lxc.container", "container", i, ct.Name)
			if ct.Node == "" {
				bad(at(""), "container %q has no node (expected a node name from the inventory)", ct.Name)
			} else if r, ok := roleOf[ct.Node]; !ok {
				bad(at("node"), "container %q: node %q is not in the inventory", ct.Name, ct.Node)
			} else if !x.hosts(r) {
				bad(at("node"), "container %q: node %q has role %s, which does not host containers (lxc roles: %v)", ct.Name, ct.Node, r, x.Roles)
			}
			// A container that runs its node's daemons shares the node's
			// network: no address of its own (validateRuns).
			switch {
			case len(ct.Runs) > 0:
			case !ct.IP.IsValid():
				bad(at(""), "container %q has no ip (expected an address in %s)", ct.Name, lxcNet)
			default:
				if x.Address.IsValid() && (!hostIn(lxcNet, ct.IP.Addr) || ct.IP.Addr == x.Address.Addr()) {
					bad(at("ip"), "container %q: IP %s is outside the LXC network %s or is the bridge's own address (expected a free host address in it)", ct.Name, ct.IP, lxcNet)
				}
				if prev, dup := cips[ct.IP.Addr]; dup {
					bad(at("ip"), "duplicate container IP %s (also container %q)", ct.IP, x.Containers[prev].Name)
				}
				cips[ct.IP.Addr] = i
			}
			switch {
			case !ct.IP6.IsValid() || len(ct.Runs) > 0:
			case !x.Address6.IsValid():
				bad(at("ip6"), "container %q: ip6 %s needs [lxc] address6 (expected the bridge's IPv6 address with prefix there, like fd00:5::1/64)", ct.Name, ct.IP6)
			case !hostIn6(ct.IP6.Addr) || ct.IP6.Addr == x.Address6.Addr():
				bad(at("ip6"), "container %q: IPv6 address %s is outside the LXC IPv6 network %s or is the bridge's own address (expected a free host address in it)", ct.Name, ct.IP6, lxcNet6)
			default:
				if prev, dup := cips[ct.IP6.Addr]; dup {
					bad(at("ip6"), "duplicate container IPv6 address %s (also container %q)", ct.IP6, x.Containers[prev].Name)
				}
				cips[ct.IP6.Addr] = i
			}
			if ct.MAC != "" && len(ct.Runs) == 0 {
				if prev, dup := macs[ct.MAC]; dup {
					bad(at("mac"), "duplicate MAC %s (%s has it too)", ct.MAC, prev)
				}
				macs[ct.MAC] = "container " + string(ct.Name)
			}
			switch {
			case ct.Rootfs.Scheme == "debian":
				for _, p := range ct.Packages {
					if !debianNameRE.MatchString(p) {
						bad(at("packages"), "container %q: package %q is not a Debian package name (expected lower-case letters, digits, \"+\", \"-\" and \".\", starting with a letter or digit, at least 2 characters, like \"nginx\")", ct.Name, p)
					}
				}
			case len(ct.Packages) > 0:
				bad(at("packages"), "container %q: packages go with rootfs = \"debian:SUITE\" only", ct.Name)
			}
			c.validateRuns(bad, i, ct, roleOf, runners)
		}
	}

	if b := c.Backup; b != nil {
		if b.Schedule.Cron == "" {
			bad(l.first("backup"), "[backup] schedule is missing (expected hourly, daily, weekly, monthly or \"daily HH:MM\")")
		}
		if b.Keep < 1 || b.Keep > 10000 {
			bad(l.first("backup.keep"), "[backup] keep = %d (expected a count from 1 to 10000)", b.Keep)
		}
		for _, p := range []struct{ key, v string }{{"subvolume", b.Subvolume}, {"dir", b.Dir}} {
			if p.v != "" && (!path.IsAbs(p.v) || path.Clean(p.v) != p.v || strings.ContainsAny(p.v, " '\"\\$`\n")) {
				bad(l.first("backup."+p.key), "[backup] %s %q (expected a clean absolute path without spaces or quotes)", p.key, p.v)
			}
		}
		if b.Containers != nil && *b.Containers && c.LXC == nil {
			bad(l.first("backup.containers"), "[backup] containers = true, but there is no [lxc] table (no container subvolume to back up)")
		}
		if t := b.Target; t != nil {
			c.validateBackupTarget(bad, l, t)
		}
	}
	c.validateRollout(bad)
	c.validateServices(bad)
	errs = append(errs, c.validateI2P(bad)...)
	return errs
}

// uniqueName checks the name of the i-th entry of an array of tables
// (what it is, for the message): present, and not one an earlier entry
// has (seen, by index).
func uniqueName(bad func(line int, format string, a ...any), l *locator, seen map[Hostname]int, array, what string, i int, name Hostname) {
	prev, dup := seen[name]
	switch {
	case name == "":
		bad(l.at(array, i, ""), "%s %d has no name", what, i+1)
	case dup:
		bad(l.at(array, i, "name"), "duplicate %s name %q (also line %d)", what, name, l.at(array, prev, "name"))
	default:
		seen[name] = i
	}
}

// debianNameRE is a Debian package name (Debian Policy 5.6.1), without
// an architecture: the container's root is arm64, as the node's.
var debianNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)

func broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

var (
	sshUserRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	sshHostRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$`)
)

// validateBackupTarget checks [backup.target]: the node's export runs ssh
// with these values, so they are held to plain forms.
func (c *Config) validateBackupTarget(bad func(line int, format string, a ...any), l *locator, t *BackupTarget) {
	user, host, ok := strings.Cut(t.Host, "@")
	switch {
	case !ok || !sshUserRE.MatchString(user) || (!sshHostRE.MatchString(host) && !isIP(host)):
		bad(l.first("backup.target.host"), "[backup.target] host %q (expected user@host, user@ADDRESS or user@NODE of the inventory)", t.Host)
	default:
		if n := c.nodeNamed(Hostname(host)); n != nil && !n.IP.IsValid() {
			bad(l.first("backup.target.host"), "[backup.target] host %q names node %s, which has no ip", t.Host, n.Name)
		}
	}
	if t.Port < 0 || t.Port > 65535 {
		bad(l.first("backup.target.port"), "[backup.target] port = %d (expected 1 to 65535; 0 or none for 22)", t.Port)
	}
	if !path.IsAbs(t.Dir) || path.Clean(t.Dir) != t.Dir || t.Dir == "/" || strings.ContainsAny(t.Dir, " '\"\\$`\n") {
		bad(l.first("backup.target.dir"), "[backup.target] dir %q (expected a clean absolute directory other than /, without spaces or quotes; each node exports into DIR/NAME)", t.Dir)
	}
	if t.Keep < 0 || t.Keep > 100000 {
		bad(l.first("backup.target.keep"), "[backup.target] keep = %d (expected 0, keep all, or a count up to 100000)", t.Keep)
	}
	if len(t.HostKeys) == 0 {
		bad(l.first("backup.target"), "[backup.target] host_keys is missing: the node accepts only the target's own host keys (its /etc/ssh/ssh_host_ed25519_key.pub)")
	}
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// nodeNamed returns the inventory node of that name, or nil.
func (c *Config) nodeNamed(name Hostname) *Node {
	for i := range c.Nodes {
		if c.Nodes[i].Name == name {
			return &c.Nodes[i]
		}
	}
	return nil
}
