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
	"path/filepath"
	"sort"
	"strings"
)

// BakedPath is where the builder puts the baked config in the initramfs.
const BakedPath = "/etc/nodeinit/cluster.json"

// Version of the baked JSON format; Read rejects other versions.
const Version = 1

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
	MAC  string `json:"mac,omitempty"` // lower case, colon separated
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
}

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
	LXCFS   bool   `json:"lxcfs"`
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
	MAC  string `json:"mac,omitempty"`
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
}

// Read loads a baked config.
func Read(path string) (*Baked, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var b Baked
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if b.Version != Version {
		return nil, fmt.Errorf("%s: baked config version %d, expected %d", path, b.Version, Version)
	}
	return &b, nil
}

// ForMAC returns the plan of the inventory node with this MAC.
func (b *Baked) ForMAC(mac string) (Plan, bool) {
	mac = strings.ToLower(mac)
	for _, n := range b.Nodes {
		if n.MAC == mac {
			return n, true
		}
	}
	return Plan{}, false
}

// ForUnknown returns the plan for a node that is not in the inventory:
// Unknown with a name derived from the MAC ("node-aabbccddeeff") and DHCP.
func (b *Baked) ForUnknown(mac string) Plan {
	p := b.Unknown
	p.Name = "node-" + strings.ReplaceAll(strings.ToLower(mac), ":", "")
	p.MAC = strings.ToLower(mac)
	p.IP, p.PrefixLen, p.Gateway = "", 0, ""
	return p
}

// Identity is which inventory node this machine is, found by MAC.
type Identity struct {
	Plan  Plan
	Iface string // kernel name of the interface whose MAC matched (or first one)
	Known bool   // false: MAC not in the inventory, Plan from ForUnknown
}

// Identify reads sys/class/net/*/address and finds this node in b. With no
// match it returns an unknown identity for the first non-loopback
// interface with a real MAC (sorted by name, so the choice is stable).
func Identify(sys string, b *Baked) (Identity, error) {
	dirs, err := filepath.Glob(filepath.Join(sys, "class/net/*/address"))
	if err != nil {
		return Identity{}, err
	}
	sort.Strings(dirs)
	first := Identity{}
	for _, f := range dirs {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		mac := strings.ToLower(strings.TrimSpace(string(data)))
		iface := filepath.Base(filepath.Dir(f))
		if len(mac) != 17 || mac == "00:00:00:00:00:00" {
			continue
		}
		if p, ok := b.ForMAC(mac); ok {
			return Identity{Plan: p, Iface: iface, Known: true}, nil
		}
		if first.Iface == "" {
			first = Identity{Plan: b.ForUnknown(mac), Iface: iface}
		}
	}
	if first.Iface == "" {
		return first, fmt.Errorf("%s: no network interface with a MAC address", filepath.Join(sys, "class/net"))
	}
	return first, nil
}
