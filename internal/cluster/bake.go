package cluster

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"path"
	"slices"
	"strings"

	"github.com/mkimage/mkimage/internal/cluster/plan"
)

// Resolve returns one plan per inventory node, in inventory order.
func (c *Config) Resolve() []plan.Plan {
	out := make([]plan.Plan, 0, len(c.Nodes))
	for _, n := range c.Nodes {
		out = append(out, c.resolve(n, true))
	}
	return out
}

// Bake returns the whole config in the form the node reads.
func (c *Config) Bake() *plan.Baked {
	keys := make([]string, len(c.Cluster.SSHAuthorizedKeys))
	for i, k := range c.Cluster.SSHAuthorizedKeys {
		keys[i] = string(k)
	}
	// An unknown node gets DHCP and the worker's governor, no LXC (its
	// containers could not be pinned) and no static routes.
	unknown := c.resolve(Node{Role: "worker"}, false)
	unknown.Routes, unknown.DNS, unknown.Domain, unknown.Gateway = nil, nil, "", ""
	return &plan.Baked{
		Version: plan.Version,
		Cluster: plan.Cluster{
			Name:              string(c.Cluster.Name),
			Domain:            string(c.Cluster.Domain),
			SSHAuthorizedKeys: keys,
			Timezone:          string(c.Cluster.Timezone),
		},
		Unknown: unknown,
		Nodes:   c.Resolve(),
	}
}

// MarshalJSON encodes the baked form, so json.Marshal(cfg) is what the
// builder writes to plan.BakedPath.
func (c *Config) MarshalJSON() ([]byte, error) { return json.Marshal(c.Bake()) }

func (c *Config) resolve(n Node, withLXC bool) plan.Plan {
	p := plan.Plan{
		Name:         string(n.Name),
		MAC:          string(n.MAC),
		SerialNumber: string(n.SerialNumber),
		CardSerial:   string(n.CardSerial),
		Role:         string(n.Role),
		Netboot:      string(n.Netboot),
		Domain:       string(c.Cluster.Domain),
		Governor:     string(n.Governor),
	}
	p.IdentifyBy = p.Keys()
	if n.IP.IsValid() {
		p.IP = n.IP.String()
		p.PrefixLen = c.Network.Subnet.Bits()
	}
	if gw := c.Network.Gateway; gw.IsValid() && gw.Addr != n.IP.Addr {
		p.Gateway = gw.String()
	}
	for _, d := range c.Network.DNS {
		p.DNS = append(p.DNS, d.String())
	}
	if p.Governor == "" {
		p.Governor = string(c.Power.governor(n.Role))
	}
	p.IPForward = c.Network.IPForward
	p.ForwardPolicy = "accept"
	rn := c.Network.Role.get(n.Role)
	var routes []Route
	for _, r := range c.Network.Routes {
		if r.Via.Addr != n.IP.Addr || !n.IP.IsValid() { // not via itself
			routes = append(routes, r)
		}
	}
	if rn != nil {
		if rn.IPForward != nil {
			p.IPForward = *rn.IPForward
		}
		if rn.ForwardPolicy != "" {
			p.ForwardPolicy = string(rn.ForwardPolicy)
		}
		for _, f := range rn.Forward {
			p.Forward = append(p.Forward, plan.ForwardRule{
				In: string(f.In), Out: string(f.Out),
				Source: f.Source.String(), Destination: f.Destination.String(),
				Action: string(f.Action),
			})
		}
		for _, x := range rn.NAT {
			p.NAT = append(p.NAT, plan.NATRule{Out: string(x.Out), Source: x.Source.String(), Destination: x.Destination.String()})
		}
		routes = append(routes, rn.Routes...)
	}
	for _, r := range routes {
		if r.Destination.Bits() == 0 {
			p.Gateway = "" // the role brings its own way out
		}
		pr := plan.Route{Destination: r.Destination.String(), Dev: string(r.Dev)}
		if r.Via.IsValid() {
			pr.Via = r.Via.String()
		}
		p.Routes = append(p.Routes, pr)
	}
	if n.Role == "gateway" && withLXC {
		p.Routes = append(p.Routes, c.serviceRoutes(n)...)
	}
	if x := c.LXC; x != nil && withLXC && x.hosts(n.Role) {
		netw := x.Address.Masked()
		l := &plan.LXC{Bridge: string(x.Bridge), Address: x.Address.String(), LXCFS: x.LXCFS == nil || *x.LXCFS, Network: string(x.Network), NAT: x.NAT}
		if l.Network == "" {
			l.Network = "veth"
		}
		if x.Address6.IsValid() {
			l.Address6 = x.Address6.String()
		}
		for _, ct := range x.Containers {
			if ct.Node == n.Name && n.Name != "" {
				// One that runs the node's daemons shares its network:
				// no address of its own.
				pc := plan.Container{Name: string(ct.Name), MAC: string(ct.MAC), Runs: slices.Clone(ct.Runs)}
				if ct.IP.IsValid() {
					pc.IP = netip.PrefixFrom(ct.IP.Addr, netw.Bits()).String()
				}
				if ct.IP6.IsValid() {
					pc.IP6 = netip.PrefixFrom(ct.IP6.Addr, x.Address6.Bits()).String()
				}
				l.Containers = append(l.Containers, pc)
			}
		}
		if x.NAT {
			// Containers reach beyond the node through it.
			p.IPForward = true
			p.NAT = append(p.NAT, plan.NATRule{Source: netw.String(), Destination: "!" + netw.String()})
		}
		p.LXC = l
	}
	if b := c.Backup; b != nil {
		p.Backup = &plan.Backup{OnCalendar: b.Schedule.OnCalendar, Cron: b.Schedule.Cron, Keep: b.Keep, Subvolume: b.Subvolume, Dir: b.Dir}
		if p.Backup.Subvolume == "" {
			p.Backup.Subvolume = "/"
		}
		if p.Backup.Dir == "" {
			p.Backup.Dir = "/.snapshots"
		}
		p.Backup.Containers = c.LXC != nil && (b.Containers == nil || *b.Containers)
		if t := b.Target; t != nil {
			p.Backup.Target = c.backupTarget(t, n)
		}
	}
	if withLXC {
		p.I2P = c.i2pPlan(n)
	}
	return p
}

// serviceRoutes are the gateway's host routes to the containers its
// services run in, each via the container's node: every node's LXC
// network has the same addresses, so only the node knows the way in.
func (c *Config) serviceRoutes(gw Node) []plan.Route {
	nodeIP := map[string]Addr{}
	for _, n := range c.Nodes {
		nodeIP[string(n.Name)] = n.IP
	}
	var rs []plan.Route
	seen := map[string]bool{}
	for _, r := range c.IngressRoutes() {
		if r.Node == string(gw.Name) || seen[r.Container] || !nodeIP[r.Node].IsValid() {
			continue
		}
		seen[r.Container] = true
		rs = append(rs, plan.Route{Destination: netip.PrefixFrom(r.Backend.Addr(), r.Backend.Addr().BitLen()).String(), Via: nodeIP[r.Node].String()})
	}
	return rs
}

// String is a one-line summary used in listings.
func (c *Config) String() string {
	return fmt.Sprintf("cluster %s: %d nodes in %s", c.Cluster.Name, len(c.Nodes), c.Network.Subnet)
}

// Host is an inventory node as the netboot tree and the DHCP server see
// it: by MAC (U-Boot asks for its files by MAC, DHCP reserves by MAC).
type Host struct {
	Name    string
	MAC     net.HardwareAddr
	IP      netip.Addr // invalid when the node takes DHCP
	Netboot string     // "", "diskless" or "install"
}

// Hosts returns the inventory nodes that have a MAC; nodes named only by
// a serial number have nothing to be netbooted or reserved by.
func (c *Config) Hosts() ([]Host, error) {
	var out []Host
	for _, p := range c.Resolve() {
		if p.MAC == "" {
			continue
		}
		mac, err := net.ParseMAC(p.MAC)
		if err != nil {
			return nil, fmt.Errorf("node %s: MAC %q: %w", p.Name, p.MAC, err)
		}
		h := Host{Name: p.Name, MAC: mac, Netboot: p.Netboot}
		if p.IP != "" {
			if h.IP, err = netip.ParseAddr(p.IP); err != nil {
				return nil, fmt.Errorf("node %s: ip %q: %w", p.Name, p.IP, err)
			}
		}
		out = append(out, h)
	}
	return out, nil
}

// backupTarget is node n's export target, nil for the target node
// itself (it holds the others' snapshots; its own stay local) and for a
// node not in the inventory (no name to export under).
func (c *Config) backupTarget(t *BackupTarget, n Node) *plan.BackupTarget {
	if n.Name == "" {
		return nil
	}
	user, host, _ := strings.Cut(t.Host, "@")
	if tn := c.nodeNamed(Hostname(host)); tn != nil {
		if tn.Name == n.Name {
			return nil
		}
		host = tn.IP.Addr.String()
	}
	pt := &plan.BackupTarget{Host: user + "@" + host, Port: t.Port, Dir: path.Join(t.Dir, string(n.Name)), Keep: t.Keep}
	for _, k := range t.HostKeys {
		pt.HostKeys = append(pt.HostKeys, string(k))
	}
	return pt
}
