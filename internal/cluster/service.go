package cluster

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/cluster/plan"
)

// Service is a [[service]] entry: something running in a container that
// is reached from outside through the ingress, the nodes with role
// gateway (haproxy there routes to the container's pinned address).
type Service struct {
	Name          Hostname `toml:"name"`
	Container     Hostname `toml:"container"` // an [[lxc.container]] with an ip
	Port          int      `toml:"port"`      // the container's port
	Protocol      Protocol `toml:"protocol"`
	PublicPort    int      `toml:"public_port"` // tcp only: the gateway's port
	Hosts         []Domain `toml:"hosts"`       // http (Host header) and tls (SNI) only
	I2P           bool     `toml:"i2p"`         // also served over i2p, by i2pd on the container's node (i2p.go)
	CheckPath     string   `toml:"check_path"`  // http: the health check's GET path (default "/")
	CheckInterval Duration `toml:"check_interval"`
	// Backend, instead of Container and Port, is a server outside the
	// cluster's containers, such as an IPv6-only host behind the IPv4
	// ingress (the seed's "reverse proxy IPv4 to IPv6").
	Backend AddrPort `toml:"backend"`
}

// Protocols are how the ingress tells services apart: http by the Host
// header on port 80, tls by SNI on port 443 (passed through, not
// terminated), tcp by a public port of its own.
var Protocols = []string{"http", "tls", "tcp"}

// Protocol is one of Protocols.
type Protocol string

func (p *Protocol) UnmarshalText(b []byte) error {
	return oneOf((*string)(p), "protocol", string(b), Protocols)
}

// The ingress's fixed public ports, and the health check defaults.
const (
	HTTPPort             = 80
	TLSPort              = 443
	DefaultCheckInterval = 5 * time.Second
	MinCheckInterval     = 100 * time.Millisecond
)

// IngressRoute is a service resolved against its container: what the ingress
// listens for and where it sends it.
type IngressRoute struct {
	Name          string
	Protocol      string   // http, tls or tcp
	Hosts         []string // http, tls
	PublicPort    int      // 80 (http), 443 (tls) or the tcp service's own
	Container     string
	Node          string
	Backend       netip.AddrPort // the container's pinned IP and the service's port
	CheckPath     string         // http: GET path; tls, tcp: a TCP connect
	CheckInterval time.Duration
	I2P           bool
	I2PAddress    string // xxxx.b32.i2p when [i2p] addresses has it
	I2PDIn        string // the container that runs Node's i2pd, "" when the node does
}

// IngressRoutes returns the services resolved against their containers, in
// config order. Parse has checked them, so every container is found.
func (c *Config) IngressRoutes() []IngressRoute {
	cts := map[Hostname]Container{}
	if c.LXC != nil {
		for _, ct := range c.LXC.Containers {
			cts[ct.Name] = ct
		}
	}
	var rs []IngressRoute
	for _, s := range c.Services {
		ct := cts[s.Container]
		backend := netip.AddrPortFrom(ct.IP.Addr, uint16(s.Port))
		if s.Backend.IsValid() {
			backend = s.Backend.AddrPort
		}
		r := IngressRoute{
			Name: string(s.Name), Protocol: string(s.Protocol), PublicPort: s.PublicPort,
			Container: string(ct.Name), Node: string(ct.Node),
			Backend:       backend,
			CheckPath:     s.CheckPath,
			CheckInterval: s.CheckInterval.Duration,
			I2P:           s.I2P,
			I2PAddress:    c.i2pAddrs[s.Name],
		}
		if s.I2P {
			r.I2PDIn = c.runsIn(ct.Node, plan.RunsI2PD)
		}
		for _, h := range s.Hosts {
			r.Hosts = append(r.Hosts, string(h))
		}
		switch r.Protocol {
		case "http":
			r.PublicPort = HTTPPort
			if r.CheckPath == "" {
				r.CheckPath = "/"
			}
		case "tls":
			r.PublicPort = TLSPort
		}
		if r.CheckInterval == 0 {
			r.CheckInterval = DefaultCheckInterval
		}
		rs = append(rs, r)
	}
	return rs
}

// Gateway is an ingress node (role gateway).
type Gateway struct {
	Name      string
	HAProxyIn string // the container that runs its haproxy, "" when the node does
}

// Gateways returns the ingress nodes (role gateway), in inventory order.
func (c *Config) Gateways() []Gateway {
	var gws []Gateway
	for _, n := range c.Nodes {
		if n.Role == "gateway" {
			gws = append(gws, Gateway{Name: string(n.Name), HAProxyIn: c.runsIn(n.Name, plan.RunsHAProxy)})
		}
	}
	return gws
}

// Reached describes, one line per host name (or one for a tcp service),
// where a route is reached from: "web: http://blog.example.org/ →
// gateway gw:80 → c-web 10.0.3.10:8080 on node01", with "gateway gw:80
// (haproxy in container edge on gw)" when a container runs the gateway's
// haproxy, and "i2p ADDRESS → i2pd in container tunnel on node01 → ..."
// when one runs the i2pd of the route's node.
func (r IngressRoute) Reached(gateways []Gateway) []string {
	names := make([]string, len(gateways))
	var in []string
	for i, g := range gateways {
		names[i] = g.Name
		if g.HAProxyIn != "" {
			in = append(in, "container "+g.HAProxyIn+" on "+g.Name)
		}
	}
	gw := "gateway " + strings.Join(names, ",") + fmt.Sprintf(":%d", r.PublicPort)
	if len(in) > 0 {
		gw += " (haproxy in " + strings.Join(in, ", ") + ")"
	}
	to := fmt.Sprintf("%s %s on %s", r.Container, r.Backend, r.Node)
	if r.Container == "" {
		to = "backend " + r.Backend.String()
	}
	var froms []string
	switch r.Protocol {
	case "http":
		for _, h := range r.Hosts {
			froms = append(froms, "http://"+h+"/")
		}
	case "tls":
		for _, h := range r.Hosts {
			froms = append(froms, "tls "+h+" (SNI)")
		}
	default:
		froms = []string{fmt.Sprintf("tcp port %d", r.PublicPort)}
	}
	lines := make([]string, len(froms))
	for i, f := range froms {
		lines[i] = fmt.Sprintf("%s: %s → %s → %s", r.Name, f, gw, to)
	}
	if r.I2P {
		// Not through the gateway: i2pd on the container's node.
		addr := r.I2PAddress
		if addr == "" {
			addr = "(address made on " + r.Node + " at first boot)"
		}
		if r.I2PDIn != "" {
			addr += " → i2pd in container " + r.I2PDIn + " on " + r.Node
		}
		lines = append(lines, fmt.Sprintf("%s: i2p %s → %s", r.Name, addr, to))
	}
	return lines
}

// validateServices checks the [[service]] entries against the containers
// and the inventory.
func (c *Config) validateServices(bad func(line int, format string, a ...any)) {
	if len(c.Services) == 0 {
		return
	}
	l := c.loc
	if len(c.Gateways()) == 0 {
		bad(l.first("service"), "services need an ingress node, and the inventory has none (expected a [[node]] with role = \"gateway\": haproxy there routes to the services)")
	}
	cts := map[Hostname]Container{}
	if c.LXC != nil {
		for _, ct := range c.LXC.Containers {
			cts[ct.Name] = ct
		}
	}
	names := map[Hostname]int{}
	hosts := map[string]int{} // protocol + " " + host → service index
	tcpPorts := map[int]int{}
	for i, s := range c.Services {
		at := func(f string) int { return l.at("service", i, f) }
		uniqueName(bad, l, names, "service", "service", i, s.Name)
		id := fmt.Sprintf("service %q", s.Name)
		switch ct, ok := cts[s.Container]; {
		case s.Backend.IsValid():
			if s.Container != "" || s.Port != 0 {
				bad(at("backend"), "%s: backend is instead of container and port (expected either backend = \"[2001:db8::10]:8080\" or container and port)", id)
			}
			if s.I2P {
				bad(at("i2p"), "%s: i2p = true needs a container (i2pd runs on the container's node; a backend has none)", id)
			}
		case s.Container == "":
			bad(at(""), "%s has no container (expected container = NAME of an [[lxc.container]], or backend = ADDRESS:PORT)", id)
		case !ok:
			bad(at("container"), "%s: container %q is not an [[lxc.container]] (expected one of: %s)", id, s.Container, containerNames(cts))
		case len(ct.Runs) > 0:
			bad(at("container"), "%s: container %q runs %s for node %s and shares its network: it has no address of its own for the ingress to route to (expected a container with ip = ...)", id, s.Container, strings.Join(ct.Runs, ", "), ct.Node)
		case !ct.IP.IsValid():
			bad(at("container"), "%s: container %q has no pinned ip (expected ip = ... in its [[lxc.container]]: the ingress routes to it)", id, s.Container)
		}
		if !s.Backend.IsValid() && (s.Port < 1 || s.Port > 65535) {
			bad(at("port"), "%s: port = %d (expected the container's port, 1-65535)", id, s.Port)
		}
		if s.Protocol == "" {
			bad(at(""), "%s has no protocol (expected one of %s)", id, strings.Join(Protocols, ", "))
		}
		if s.Protocol == "tcp" {
			switch prev, dup := tcpPorts[s.PublicPort]; {
			case s.PublicPort < 1 || s.PublicPort > 65535:
				bad(at(""), "%s: a tcp service needs public_port (expected the gateway's port for it, 1-65535, not 80 or 443)", id)
			case s.PublicPort == HTTPPort || s.PublicPort == TLSPort:
				bad(at("public_port"), "%s: public_port = %d is the ingress's http or tls port (expected another port)", id, s.PublicPort)
			case dup:
				bad(at("public_port"), "%s: public_port %d is taken by service %q (line %d) (expected a port of its own)", id, s.PublicPort, c.Services[prev].Name, l.at("service", prev, "public_port"))
			default:
				tcpPorts[s.PublicPort] = i
			}
			if len(s.Hosts) > 0 {
				bad(at("hosts"), "%s: a tcp service has no host names (a TCP stream carries none; expected public_port only, or protocol = \"http\" or \"tls\")", id)
			}
		} else if s.Protocol != "" {
			if s.PublicPort != 0 {
				bad(at("public_port"), "%s: public_port is for tcp services (%s services share port %d, told apart by host name)", id, s.Protocol, map[Protocol]int{"http": HTTPPort, "tls": TLSPort}[s.Protocol])
			}
			if len(s.Hosts) == 0 {
				bad(at(""), "%s: an %s service needs hosts (expected hosts = [\"blog.example.org\"])", id, s.Protocol)
			}
			for _, h := range s.Hosts {
				k := string(s.Protocol) + " " + string(h)
				if prev, dup := hosts[k]; dup && prev != i {
					bad(at("hosts"), "%s: host %s is also service %q's (line %d) (expected each %s host name once)", id, h, c.Services[prev].Name, l.at("service", prev, "hosts"), s.Protocol)
				} else if dup {
					bad(at("hosts"), "%s: host %s is listed twice", id, h)
				}
				hosts[k] = i
			}
		}
		if s.CheckPath != "" {
			if s.Protocol != "http" {
				bad(at("check_path"), "%s: check_path is for http services (a %s service is checked by a TCP connect)", id, s.Protocol)
			} else if !strings.HasPrefix(s.CheckPath, "/") || strings.ContainsFunc(s.CheckPath, func(r rune) bool { return r <= ' ' || r == '"' || r == '\'' || r == '\\' || r == '#' || r > '~' }) {
				bad(at("check_path"), "%s: check_path %q (expected a URL path like /healthz, without spaces or quotes)", id, s.CheckPath)
			}
		}
		if d := s.CheckInterval.Duration; d != 0 && (d < MinCheckInterval || d > time.Hour) {
			bad(at("check_interval"), "%s: check_interval %s (expected %s to 1h, like \"5s\")", id, d, MinCheckInterval)
		}
	}
}

func containerNames(cts map[Hostname]Container) string {
	if len(cts) == 0 {
		return "none: the config has no [[lxc.container]]"
	}
	var ns []string
	for n := range cts {
		ns = append(ns, string(n))
	}
	sort.Strings(ns)
	return strings.Join(ns, ", ")
}
