package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/mkimage/mkimage/internal/cluster/plan"
	"github.com/mkimage/mkimage/internal/i2p"
)

// I2PConfig is the [i2p] table. Services are served over i2p by i2p = true
// in their [[service]]; this table adds the client tunnels of nodes that
// reach i2p services, and where the addresses the nodes made are.
//
//	[i2p]
//	addresses = "i2p-addresses"  # optional, relative to this file
//
//	[[i2p.client]]
//	name = "blog"                # the tunnel's name
//	nodes = ["node02"]           # and/or roles = ["gateway"]
//	destination = "blog"         # a service with i2p = true, or "xxxx.b32.i2p"
//	port = 8081                  # where i2pd listens on the node
//	address = "127.0.0.1"        # optional (default 127.0.0.1)
//
// A service's address exists only once its node has booted (the keys are
// made there, never in the image), so a client naming a service is baked
// into the plan once the addresses file, the nodes'
// /var/lib/mkimage/i2p-addresses collected, has the service's line.
type I2PConfig struct {
	Addresses string      `toml:"addresses"`
	Clients   []I2PClient `toml:"client"`
}

// I2PClient is an [[i2p.client]] entry.
type I2PClient struct {
	Name        Hostname   `toml:"name"`
	Nodes       []Hostname `toml:"nodes"`
	Roles       []Role     `toml:"roles"`
	Destination string     `toml:"destination"`
	Port        int        `toml:"port"`
	Address     Addr       `toml:"address"`
}

// DefaultI2PClientAddress is where a client tunnel listens unless told.
const DefaultI2PClientAddress = "127.0.0.1"

func (cl I2PClient) on(n Node) bool {
	for _, x := range cl.Nodes {
		if x == n.Name {
			return true
		}
	}
	for _, r := range cl.Roles {
		if r == n.Role {
			return true
		}
	}
	return false
}

func (cl I2PClient) address() string {
	if cl.Address.IsValid() {
		return cl.Address.String()
	}
	return DefaultI2PClientAddress
}

// isAddress tells a .b32.i2p destination from a service name (a DNS
// label, without dots).
func isAddress(dest string) bool { return strings.Contains(dest, ".") }

// validateI2P checks [i2p] and reads its addresses file, whose own errors
// name that file and its lines.
func (c *Config) validateI2P(bad func(line int, format string, a ...any)) []*Error {
	x := c.I2P
	if x == nil {
		return nil
	}
	l := c.loc
	var errs []*Error
	if x.Addresses != "" {
		errs = c.readI2PAddresses(bad)
	}
	svcs := map[Hostname]Service{}
	var served []string
	for _, s := range c.Services {
		svcs[s.Name] = s
		if s.I2P {
			served = append(served, string(s.Name))
		}
	}
	inventory := map[Hostname]bool{}
	for _, n := range c.Nodes {
		inventory[n.Name] = true
	}
	names := map[Hostname]int{}
	ports := map[string]int{} // node + " " + address:port → client index
	for i, cl := range x.Clients {
		at := func(f string) int { return l.at("i2p.client", i, f) }
		uniqueName(bad, l, names, "i2p.client", "i2p client", i, cl.Name)
		id := fmt.Sprintf("i2p client %q", cl.Name)
		if len(cl.Nodes) == 0 && len(cl.Roles) == 0 {
			bad(at(""), "%s has neither nodes nor roles (expected nodes = [\"node01\"] or roles = [\"gateway\"]: where the tunnel runs)", id)
		}
		for _, n := range cl.Nodes {
			if !inventory[n] {
				bad(at("nodes"), "%s: node %q is not in the inventory", id, n)
			}
		}
		switch d := cl.Destination; {
		case d == "":
			bad(at(""), "%s has no destination (expected the name of a [[service]] with i2p = true, or an address like \"xxxx.b32.i2p\")", id)
		case isAddress(d):
			if !i2p.ValidAddress(d) {
				bad(at("destination"), "%s: destination %q is not a .b32.i2p address (expected 52 lower-case base32 characters and .b32.i2p, or the name of a [[service]] with i2p = true)", id, d)
			}
		default:
			s, ok := svcs[Hostname(d)]
			switch {
			case !ok:
				list := strings.Join(served, ", ")
				if list == "" {
					list = "none has i2p = true"
				}
				bad(at("destination"), "%s: destination %q is not a [[service]] (expected one with i2p = true: %s; or a .b32.i2p address)", id, d, list)
			case !s.I2P:
				bad(at("destination"), "%s: service %q is not served over i2p (expected i2p = true in its [[service]])", id, d)
			}
		}
		if cl.Port < 1 || cl.Port > 65535 {
			bad(at("port"), "%s: port = %d (expected the port i2pd listens on for it on the node, 1-65535)", id, cl.Port)
			continue
		}
		for _, n := range c.Nodes {
			if !cl.on(n) {
				continue
			}
			k := fmt.Sprintf("%s %s:%d", n.Name, cl.address(), cl.Port)
			if prev, dup := ports[k]; dup {
				bad(at("port"), "%s: port %d on node %s is taken by i2p client %q (line %d) (expected a port of its own)", id, cl.Port, n.Name, x.Clients[prev].Name, l.at("i2p.client", prev, "port"))
				break
			}
			ports[k] = i
		}
	}
	return errs
}

// readI2PAddresses reads [i2p] addresses: lines "SERVICE ADDRESS", as the
// nodes write them (plan.I2PAddressesPath), blank lines and # comments.
func (c *Config) readI2PAddresses(bad func(line int, format string, a ...any)) []*Error {
	p := c.I2P.Addresses
	if !filepath.IsAbs(p) {
		p = filepath.Join(filepath.Dir(c.file), p)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		bad(c.loc.first("i2p.addresses"), "[i2p] addresses: %v (expected the nodes' /%s collected into one file)", err, plan.I2PAddressesPath)
		return nil
	}
	var errs []*Error
	c.i2pAddrs = map[Hostname]string{}
	lineOf := map[Hostname]int{}
	for i, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		var name Hostname
		if len(f) != 2 || name.UnmarshalText([]byte(f[0])) != nil || !i2p.ValidAddress(f[1]) {
			errs = append(errs, &Error{p, i + 1, fmt.Sprintf("%q (expected \"SERVICE xxxx.b32.i2p\")", line)})
			continue
		}
		if prev, dup := c.i2pAddrs[name]; dup && prev != f[1] {
			errs = append(errs, &Error{p, i + 1, fmt.Sprintf("service %s has another address on line %d (expected one: keep the line of the node that hosts it now)", name, lineOf[name])})
			continue
		}
		c.i2pAddrs[name], lineOf[name] = f[1], i+1
	}
	return errs
}

// i2pPlan is node n's tunnels, nil when it has none.
func (c *Config) i2pPlan(n Node) *plan.I2P {
	var x plan.I2P
	for _, r := range c.IngressRoutes() {
		if !r.I2P || r.Node != string(n.Name) || n.Name == "" {
			continue
		}
		s := plan.I2PServer{Service: r.Name, Type: "server", Host: r.Backend.Addr().String(), Port: int(r.Backend.Port())}
		if r.Protocol == "http" {
			s.Type = "http"
			if len(r.Hosts) > 0 {
				s.HostOverride = r.Hosts[0]
			}
		}
		x.Servers = append(x.Servers, s)
	}
	if c.I2P != nil && n.Name != "" {
		for _, cl := range c.I2P.Clients {
			if !cl.on(n) {
				continue
			}
			pc := plan.I2PClient{Name: string(cl.Name), Destination: cl.Destination, Address: cl.address(), Port: cl.Port}
			if !isAddress(cl.Destination) {
				pc.Service = cl.Destination
				if pc.Destination = c.i2pAddrs[Hostname(cl.Destination)]; pc.Destination == "" {
					continue // see I2PNotes
				}
			}
			x.Clients = append(x.Clients, pc)
		}
	}
	if len(x.Servers) == 0 && len(x.Clients) == 0 {
		return nil
	}
	return &x
}

// hasI2PTunnels tells whether inventory node n has i2p tunnels, those
// i2pPlan plans: a server for a service with i2p = true in one of its
// containers, or an [[i2p.client]] on it, planned already or waiting for
// the address of the service it names (see I2PNotes).
func (c *Config) hasI2PTunnels(n Node) bool {
	if n.Name == "" {
		return false
	}
	for _, r := range c.IngressRoutes() {
		if r.I2P && r.Node == string(n.Name) {
			return true
		}
	}
	return c.I2P != nil && slices.ContainsFunc(c.I2P.Clients, func(cl I2PClient) bool { return cl.on(n) })
}

// I2PNotes says which client tunnels are left out of the plans because
// the address of the service they name is not collected yet.
func (c *Config) I2PNotes() []string {
	if c.I2P == nil {
		return nil
	}
	hosts := map[string]string{}
	for _, r := range c.IngressRoutes() {
		hosts[r.Name] = r.Node
	}
	var notes []string
	for _, cl := range c.I2P.Clients {
		d := cl.Destination
		if isAddress(d) || c.i2pAddrs[Hostname(d)] != "" {
			continue
		}
		where := "[i2p] addresses"
		if c.I2P.Addresses != "" {
			where = c.I2P.Addresses
		}
		notes = append(notes, fmt.Sprintf("i2p client %s: left out of the plans until service %s's address is known (made on %s at first boot; collect /%s into %s)", cl.Name, d, hosts[d], plan.I2PAddressesPath, where))
	}
	sort.Strings(notes)
	return notes
}
