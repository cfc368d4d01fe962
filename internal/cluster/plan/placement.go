package plan

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// PlacementFile, in a node's root, names the containers that run on
// another node than the cluster config's: one "CONTAINER NODE" line
// each. A container move writes it on the nodes it touches (the one the
// container left, the one it went to, the gateways), and every boot
// reads it before the policy, so the move outlives reboots and updates
// (it is in /var/lib/mkimage, which every version mounts) until the
// config says the same and the line is removed.
const PlacementFile = "var/lib/mkimage/placement"

// BootedFile, in a node's root, is the baked config the node booted
// with (as built: PlacementFile is applied on reading), and NodeFile who
// it booted as (BootedNode). nodeinit writes both at every boot, so its
// container command, run from the booted root where the initramfs's
// copy is out of reach, can plan the node again when a container moves.
const (
	BootedFile = "var/lib/mkimage/cluster.json"
	NodeFile   = "var/lib/mkimage/node.json"
)

// BootedNode is who the node booted as: its name and the MAC of the
// interface Identify found it by (the inventory may name it by serial,
// and its MAC change at every boot).
type BootedNode struct {
	Name string `json:"name"`
	MAC  string `json:"mac"`
}

// Booted is what nodeinit left in a node's root at boot (the config as
// built, who the node booted as) and the placement there now.
type Booted struct {
	Config    *Baked
	Node      BootedNode
	Placement Placement
}

// ReadBooted reads root's BootedFile, NodeFile and PlacementFile.
func ReadBooted(root string) (Booted, error) {
	var b Booted
	var err error
	if b.Config, err = Read(filepath.Join(root, BootedFile)); err != nil {
		return b, fmt.Errorf("the config this node booted with: %w", err)
	}
	data, err := os.ReadFile(filepath.Join(root, NodeFile))
	if err == nil {
		err = json.Unmarshal(data, &b.Node)
	}
	if err != nil {
		return b, fmt.Errorf("who this node booted as: %w", err)
	}
	b.Placement, err = ReadPlacement(root)
	return b, err
}

// Plan is the booted node's plan with the containers placed as p says,
// and the MAC it booted with. The config b read is not changed.
func (b Booted) Plan(p Placement) (Plan, error) {
	c := *b.Config // Place replaces c.Nodes, never changing b's
	if err := c.Place(p); err != nil {
		return Plan{}, err
	}
	self, ok := c.Node(b.Node.Name)
	if !ok {
		return Plan{}, fmt.Errorf("node %q (%s) is not in the config it booted with", b.Node.Name, NodeFile)
	}
	self.MAC = b.Node.MAC
	return self, nil
}

// Node is the plan of the inventory node named name.
func (b *Baked) Node(name string) (Plan, bool) {
	for _, n := range b.Nodes {
		if n.Name == name && name != "" {
			return n, true
		}
	}
	return Plan{}, false
}

// ContainerNode is the node whose plan holds container name, "" if none.
func (b *Baked) ContainerNode(name string) string {
	for _, n := range b.Nodes {
		if n.LXC == nil {
			continue
		}
		for _, c := range n.LXC.Containers {
			if c.Name == name {
				return n.Name
			}
		}
	}
	return ""
}

// The lines nodeinit container prints on stderr as a move goes, which
// the build host's mkimage container move waits for to tell a failed
// move's state and to time the container's downtime: the last pass
// stops it (or, not running, takes its last copy), the new node put it
// in place (from then on, the old node must not start it again), and
// started it (started=true: it ran) or left it stopped as it was; a
// live move's checkpoint restored, or why a live move was not (CRIU's
// reason, from either node).
const (
	MoveStopping  = "nodeinit: move: stopping"
	MoveInstalled = "nodeinit: move: installed"
	MoveStarted   = "nodeinit: move: started="
	MoveLive      = "nodeinit: move: restored live"
	MoveNotLive   = "nodeinit: move: not live: "
)

// Placement maps a container's name to the node it runs on instead of
// the config's.
type Placement map[string]string

// ParsePlacement reads PlacementFile's lines; # comments and blank lines
// are skipped. A malformed line or a container named twice is an error
// naming the line.
func ParsePlacement(data []byte) (Placement, error) {
	p := Placement{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: %q: want \"CONTAINER NODE\"", n, line)
		}
		if _, dup := p[f[0]]; dup {
			return nil, fmt.Errorf("line %d: container %s placed twice", n, f[0])
		}
		p[f[0]] = f[1]
	}
	return p, sc.Err()
}

// Format is the file's content, sorted by container.
func (p Placement) Format() []byte {
	var b bytes.Buffer
	b.WriteString("# CONTAINER NODE: containers moved off the cluster config's node (nodeinit container)\n")
	for _, n := range p.Containers() {
		fmt.Fprintf(&b, "%s %s\n", n, p[n])
	}
	return b.Bytes()
}

// Containers are p's containers, sorted.
func (p Placement) Containers() []string {
	names := make([]string, 0, len(p))
	for n := range p {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ReadPlacement reads root's PlacementFile; none is an empty Placement.
func ReadPlacement(root string) (Placement, error) {
	path := filepath.Join(root, PlacementFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Placement{}, nil
	}
	if err != nil {
		return nil, err
	}
	p, err := ParsePlacement(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// Place rewrites the plans as if the config placed each container of p
// on its node: the container's entry (its IP, IP6, MAC) moves to that
// node's LXC containers, and every node that routed to the container
// through its old node (the gateways: Config.serviceRoutes) routes
// through the new one, or not at all when the container comes to it. A
// gateway with an ingress (HAProxyCfg) gets the route even if the
// container was on the gateway itself before. Nothing changes unless
// all of p can be placed: a container or node the config lacks, a node
// without LXC, a container that runs a node's daemons (it belongs to
// its node) or that a node serves over i2p (its tunnel's keys were made
// on its node and stay there) is an error.
func (b *Baked) Place(p Placement) error {
	if len(p) == 0 {
		return nil
	}
	nodes := slices.Clone(b.Nodes)
	for i := range nodes {
		if l := nodes[i].LXC; l != nil {
			c := *l
			c.Containers = slices.Clone(l.Containers)
			nodes[i].LXC = &c
		}
		nodes[i].Routes = slices.Clone(nodes[i].Routes)
	}
	index := func(name string) int {
		return slices.IndexFunc(nodes, func(n Plan) bool { return n.Name == name && name != "" })
	}
	for _, name := range p.Containers() {
		dst := index(p[name])
		if dst < 0 {
			return fmt.Errorf("container %s: no node %s in the cluster config", name, p[name])
		}
		src, at := -1, -1
		for i, n := range nodes {
			if n.LXC == nil {
				continue
			}
			if j := slices.IndexFunc(n.LXC.Containers, func(c Container) bool { return c.Name == name }); j >= 0 {
				src, at = i, j
			}
		}
		if src < 0 {
			return fmt.Errorf("container %s: not in the cluster config", name)
		}
		ct := nodes[src].LXC.Containers[at]
		if len(ct.Runs) > 0 {
			return fmt.Errorf("container %s runs %s for node %s: it cannot move", name, strings.Join(ct.Runs, ", "), nodes[src].Name)
		}
		if x := nodes[src].I2P; x != nil && ct.IP != "" {
			for _, s := range x.Servers {
				if s.Host == AddrOf(ct.IP) {
					return fmt.Errorf("container %s: service %s is served over i2p from node %s, whose tunnel keys stay there: it cannot move", name, s.Service, nodes[src].Name)
				}
			}
		}
		if src == dst {
			continue
		}
		if nodes[dst].LXC == nil {
			return fmt.Errorf("container %s: node %s hosts no containers (its role has no [lxc])", name, nodes[dst].Name)
		}
		nodes[src].LXC.Containers = slices.Delete(nodes[src].LXC.Containers, at, at+1)
		nodes[dst].LXC.Containers = append(nodes[dst].LXC.Containers, ct)
		if ct.IP == "" {
			continue
		}
		if nodes[dst].IP == "" {
			return fmt.Errorf("container %s: node %s has no static address to route to it by", name, nodes[dst].Name)
		}
		host := hostPrefix(ct.IP)
		for i := range nodes {
			n := &nodes[i]
			had := slices.IndexFunc(n.Routes, func(r Route) bool { return r.Destination == host })
			if had < 0 && n.HAProxyCfg == "" {
				continue
			}
			if had >= 0 {
				n.Routes = slices.Delete(n.Routes, had, had+1)
			}
			if i != dst {
				n.Routes = append(n.Routes, Route{Destination: host, Via: nodes[dst].IP})
			}
		}
	}
	b.Nodes = nodes
	return nil
}

// AddrOf is a CIDR's address ("10.0.3.10/24" -> "10.0.3.10").
func AddrOf(cidr string) string { return strings.SplitN(cidr, "/", 2)[0] }

// hostPrefix is the host route destination of a CIDR's address.
func hostPrefix(cidr string) string {
	a, err := netip.ParseAddr(AddrOf(cidr))
	if err != nil {
		return cidr
	}
	return netip.PrefixFrom(a, a.BitLen()).String()
}
