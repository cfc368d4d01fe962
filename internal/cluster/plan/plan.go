// Package plan holds the resolved, per-node view of the cluster config as
// plain values, and its JSON form baked into the initramfs
// (/etc/nodeinit/cluster.json). It imports only the standard library so
// that nodeinit, which reads it on the node, stays a small binary: the TOML
// parser and the validation live in package cluster, on the build host.
package plan

import (
	"encoding/json"
	"fmt"
	"os"
)

// RoleFile, relative to the root, holds the node's role (one line):
// nodeinit's policy writes it at every boot, so the node's update
// command, which runs from the booted root without the plan, knows which
// wave of a rollout the node is in.
const RoleFile = "etc/mkimage/role"

// BakedPath is where the builder puts the baked config in the initramfs.
const BakedPath = "/etc/nodeinit/cluster.json"

// Version of the baked JSON format. Version 2 added serial_number and
// card_serial and made mac optional: a version-1 reader would silently
// miss every node named without a MAC, so it must refuse the file. A
// version-1 file is a valid version-2 file (every node has a MAC), so Read
// takes both.
const Version = 2

// Baked is the whole cluster as the node sees it: the cluster-wide values
// and one Plan per inventory node.
type Baked struct {
	Version int     `json:"version"`
	Cluster Cluster `json:"cluster"`
	// Unknown is the plan for a node whose MAC is not in the inventory,
	// minus its name (see ForUnknown): DHCP, default governor, no forwarding.
	Unknown Plan   `json:"unknown"`
	Nodes   []Plan `json:"nodes"`
}

// Cluster holds the cluster-wide values.
type Cluster struct {
	Name              string   `json:"name"`
	Domain            string   `json:"domain,omitempty"`
	SSHAuthorizedKeys []string `json:"ssh_authorized_keys,omitempty"`
	Timezone          string   `json:"timezone,omitempty"`
}

// Plan is everything one node needs at first boot and at every boot.
type Plan struct {
	Name string `json:"name"`
	// The identity keys (see Identify); values are normalised as
	// NormalizeMAC, NormalizeSerialNumber and NormalizeCardSerial do. In
	// the plan Identify returns, MAC is the cluster interface's MAC on
	// this boot.
	MAC          string `json:"mac,omitempty"`
	SerialNumber string `json:"serial_number,omitempty"`
	CardSerial   string `json:"card_serial,omitempty"`
	// IdentifyBy lists the keys the node has, in the order Identify tries
	// them (KeyOrder); for people reading the plan, Identify does not use it.
	IdentifyBy []string `json:"identify_by,omitempty"`
	// IP is the bare address and PrefixLen the subnet's length; both are
	// empty/zero for DHCP (unknown nodes).
	IP        string   `json:"ip,omitempty"`
	PrefixLen int      `json:"prefix_len,omitempty"`
	Role      string   `json:"role"`
	Netboot   string   `json:"netboot,omitempty"`
	Gateway   string   `json:"gateway,omitempty"` // default route; empty for the gateway itself
	DNS       []string `json:"dns,omitempty"`
	Domain    string   `json:"domain,omitempty"`
	Governor  string   `json:"governor,omitempty"` // empty: leave the kernel's default

	IPForward bool `json:"ip_forward"`
	// ForwardPolicy is the FORWARD chain policy ("accept" or "drop"); with
	// no rules and policy accept no chain is installed at all.
	ForwardPolicy string        `json:"forward_policy,omitempty"`
	Forward       []ForwardRule `json:"forward,omitempty"`
	NAT           []NATRule     `json:"nat,omitempty"`
	Routes        []Route       `json:"routes,omitempty"`

	LXC    *LXC    `json:"lxc,omitempty"`
	Backup *Backup `json:"backup,omitempty"`
	// HAProxyCfg is the ingress's haproxy.cfg, on the gateways of a
	// config with services (the builder generates it, the same for every
	// gateway); policy writes it to HAProxyPath at every boot.
	HAProxyCfg string `json:"haproxy_cfg,omitempty"`
	I2P        *I2P   `json:"i2p,omitempty"`
}

// HAProxyPath is where Debian's haproxy reads its config, in the root.
const HAProxyPath = "etc/haproxy/haproxy.cfg"

// CIDR returns "ip/prefix" or "" for DHCP.
func (p Plan) CIDR() string {
	if p.IP == "" {
		return ""
	}
	return fmt.Sprintf("%s/%d", p.IP, p.PrefixLen)
}

// DHCP reports whether the node has no static address.
func (p Plan) DHCP() bool { return p.IP == "" }

// ForwardRule is one FORWARD chain rule, evaluated in order. Source and
// Destination are CIDRs, optionally prefixed with "!" for "not in".
type ForwardRule struct {
	In          string `json:"in,omitempty"`
	Out         string `json:"out,omitempty"`
	Source      string `json:"source,omitempty"`
	Destination string `json:"destination,omitempty"`
	Action      string `json:"action"` // accept, drop or reject
}

// NATRule masquerades packets leaving through Out (any interface if empty)
// whose addresses match Source/Destination (CIDRs, "!" negates).
type NATRule struct {
	Out         string `json:"out,omitempty"`
	Source      string `json:"source,omitempty"`
	Destination string `json:"destination,omitempty"`
}

// Route is a static route. Destination is a CIDR or "default"; Dev empty
// means the cluster interface (the one with the node's MAC).
type Route struct {
	Destination string `json:"destination"`
	Via         string `json:"via,omitempty"`
	Dev         string `json:"dev,omitempty"`
}

// LXC is the container host setup of a node.
type LXC struct {
	Bridge  string `json:"bridge"`
	Address string `json:"address"` // bridge address with prefix, e.g. 10.0.3.1/24
	// Address6 is the bridge's IPv6 address with prefix, e.g.
	// fd00:5::1/64; empty: the bridge has none of its own (only the
	// kernel's link-local one) and no container has an ip6.
	Address6 string `json:"address6,omitempty"`
	LXCFS    bool   `json:"lxcfs"`
	// Network is the default container network type: "veth" (linked to
	// Bridge), "empty" or "none".
	Network    string      `json:"network"`
	NAT        bool        `json:"nat"`
	Containers []Container `json:"containers,omitempty"` // only this node's
}

// Container is one container pinned to this node.
type Container struct {
	Name string `json:"name"`
	IP   string `json:"ip"` // with the LXC network's prefix, e.g. 10.0.3.10/24
	// IP6 is the pinned IPv6 address with the bridge's IPv6 prefix,
	// e.g. fd00:5::10/64; empty: IPv6 is held to the MAC only.
	IP6 string `json:"ip6,omitempty"`
	MAC string `json:"mac,omitempty"`
	// Runs are the node's daemons this container runs in its place
	// (RunsHAProxy, RunsI2PD). Such a container has no IP or MAC: it
	// shares its node's network (lxc.net.0.type = none), so its haproxy
	// binds the node's ports and its i2pd reaches the node's containers
	// as the node's would.
	Runs []string `json:"runs,omitempty"`
}

// What a container can run for its node (Container.Runs): the ingress's
// haproxy (Plan.HAProxyCfg) and the i2pd of the node's tunnels (Plan.I2P).
const (
	RunsHAProxy = "haproxy"
	RunsI2PD    = "i2pd"
)

// RunsIn is the container of the plan's that runs daemon, "" when the
// node runs it itself.
func (p *Plan) RunsIn(daemon string) string {
	if p.LXC == nil {
		return ""
	}
	for _, ct := range p.LXC.Containers {
		for _, d := range ct.Runs {
			if d == daemon {
				return ct.Name
			}
		}
	}
	return ""
}

// Backup is the btrfs snapshot schedule.
type Backup struct {
	// OnCalendar is a systemd OnCalendar value and Cron the same time as
	// the five cron fields; both are derived from one validated schedule.
	OnCalendar string `json:"on_calendar"`
	Cron       string `json:"cron"`
	Keep       int    `json:"keep"`
	Subvolume  string `json:"subvolume"` // what to snapshot, e.g. "/"
	Dir        string `json:"dir"`       // where snapshots go, e.g. "/.snapshots"
	// Containers: /var/lib/lxc is snapshotted (and exported) too.
	Containers bool          `json:"containers,omitempty"`
	Target     *BackupTarget `json:"target,omitempty"`
}

// BackupTarget is where the node exports each snapshot after taking it.
type BackupTarget struct {
	Host     string   `json:"host"` // user@host, a node's name already resolved to its address
	Port     int      `json:"port,omitempty"`
	Dir      string   `json:"dir"`            // this node's own directory on the target
	Keep     int      `json:"keep,omitempty"` // 0 keeps all
	HostKeys []string `json:"host_keys"`      // "ssh-ed25519 AAAA..." lines
}

// Read loads a baked config.
func Read(path string) (*Baked, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var b Baked
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if b.Version < 1 || b.Version > Version {
		return nil, fmt.Errorf("%s: baked config version %d, expected 1 to %d", path, b.Version, Version)
	}
	return &b, nil
}

// I2P is what a node's i2pd serves and reaches: a server tunnel for each
// service with i2p = true whose container runs on the node, and the
// config's [[i2p.client]] tunnels for the node. Policy writes them to
// I2PTunnelsPath at every boot and makes each server tunnel's keys
// (I2PKeyFile) on the node, once.
type I2P struct {
	Servers []I2PServer `json:"servers,omitempty"`
	Clients []I2PClient `json:"clients,omitempty"`
}

// I2PServer is a server tunnel to a service's container.
type I2PServer struct {
	Service string `json:"service"`
	Type    string `json:"type"` // i2pd tunnel type: "http" or "server"
	Host    string `json:"host"` // the container's pinned IP
	Port    int    `json:"port"`
	// HostOverride is the Host header i2pd's http tunnel sends (the
	// service's first host name), so the container's virtual host matches.
	HostOverride string `json:"host_override,omitempty"`
}

// I2PClient is a client tunnel: i2pd listens on Address:Port and connects
// each connection to Destination.
type I2PClient struct {
	Name        string `json:"name"`
	Destination string `json:"destination"`       // xxxx.b32.i2p
	Service     string `json:"service,omitempty"` // when named by a service of the config
	Address     string `json:"address"`
	Port        int    `json:"port"`
}

// Where i2p lives in a Debian root: i2pd.service reads tunnels from
// /etc/i2pd/tunnels.conf.d (--tunnelsdir) and keeps keys in its data dir
// /var/lib/i2pd (owned by user i2pd), to which a tunnel's "keys = FILE"
// is relative. I2PAddressesPath lists "SERVICE ADDRESS" for the build host
// to collect.
const (
	I2PTunnelsPath   = "etc/i2pd/tunnels.conf.d/mkimage.conf"
	I2PDataDir       = "var/lib/i2pd"
	I2PAddressesPath = "var/lib/mkimage/i2p-addresses"
)

// I2PKeyFile is the key file of a service's server tunnel, relative to
// I2PDataDir.
func I2PKeyFile(service string) string { return "mkimage-" + service + ".dat" }
