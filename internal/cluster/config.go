// Package cluster is the cluster config: a strict TOML file describing the
// cluster, its network policy and its node inventory. Parse validates it
// fully (every error names file:line and what was expected) and Bake turns
// it into the per-node plans of package plan, which is what the node reads
// (as JSON) at boot; the node never parses TOML.
package cluster

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Config is a parsed and validated cluster config.
type Config struct {
	Cluster  ClusterInfo `toml:"cluster"`
	Network  Network     `toml:"network"`
	Power    Power       `toml:"power"`
	LXC      *LXC        `toml:"lxc"`
	Backup   *Backup     `toml:"backup"`
	Rollout  *Rollout    `toml:"rollout"`
	Services []Service   `toml:"service"`
	Nodes    []Node      `toml:"node"`
	I2P      *I2PConfig  `toml:"i2p"`

	file     string
	loc      *locator
	i2pAddrs map[Hostname]string // [i2p] addresses: service → xxxx.b32.i2p
}

// ClusterInfo is the [cluster] table.
type ClusterInfo struct {
	Name              Hostname `toml:"name"`
	Domain            Domain   `toml:"domain"`
	SSHAuthorizedKeys []SSHKey `toml:"ssh_authorized_keys"`
	Timezone          Timezone `toml:"timezone"`
}

// Network is the [network] table: the cluster subnet, values every node
// gets, and per-role forwarding policy under [network.role.<role>].
type Network struct {
	Subnet    Prefix   `toml:"subnet"`
	Gateway   Addr     `toml:"gateway"`
	DNS       []Addr   `toml:"dns"`
	IPForward bool     `toml:"ip_forward"`
	Routes    []Route  `toml:"route"`
	Role      RoleNets `toml:"role"`
}

// RoleNets holds the forwarding policy of each role.
type RoleNets struct {
	Worker  *RoleNet `toml:"worker"`
	Gateway *RoleNet `toml:"gateway"`
	Router  *RoleNet `toml:"router"`
}

func (r RoleNets) get(role Role) *RoleNet {
	switch role {
	case "worker":
		return r.Worker
	case "gateway":
		return r.Gateway
	case "router":
		return r.Router
	}
	return nil
}

// RoleNet is the policy of the nodes of one role.
type RoleNet struct {
	IPForward     *bool         `toml:"ip_forward"` // unset: [network] ip_forward
	ForwardPolicy Policy        `toml:"forward_policy"`
	Forward       []ForwardRule `toml:"forward"`
	NAT           []NATRule     `toml:"nat"`
	Routes        []Route       `toml:"route"`
}

// ForwardRule is a [[network.role.R.forward]] entry.
type ForwardRule struct {
	In          Iface  `toml:"in"`
	Out         Iface  `toml:"out"`
	Source      Match  `toml:"source"`
	Destination Match  `toml:"destination"`
	Action      Action `toml:"action"`
}

// NATRule is a [[network.role.R.nat]] entry: masquerade.
type NATRule struct {
	Out         Iface `toml:"out"`
	Source      Match `toml:"source"`
	Destination Match `toml:"destination"`
}

// Route is a static route.
type Route struct {
	Destination Dest  `toml:"destination"`
	Via         Addr  `toml:"via"`
	Dev         Iface `toml:"dev"`
}

// Power is the [power] table: the governor per role, and a default.
type Power struct {
	Default Governor `toml:"default"`
	Worker  Governor `toml:"worker"`
	Gateway Governor `toml:"gateway"`
	Router  Governor `toml:"router"`
}

func (p Power) governor(role Role) Governor {
	g := map[Role]Governor{"worker": p.Worker, "gateway": p.Gateway, "router": p.Router}[role]
	if g == "" {
		g = p.Default
	}
	return g
}

// LXC is the [lxc] table.
type LXC struct {
	Bridge     Iface       `toml:"bridge"`
	Address    Prefix      `toml:"address"`  // bridge address, e.g. 10.0.3.1/24
	Address6   Prefix6     `toml:"address6"` // bridge IPv6 address, e.g. fd00:5::1/64; optional
	LXCFS      *bool       `toml:"lxcfs"`    // default true: containers see their own /proc figures
	Network    LXCNet      `toml:"network"`  // default: veth
	NAT        bool        `toml:"nat"`      // masquerade containers' traffic
	Roles      []Role      `toml:"roles"`    // roles that host containers; empty: all
	Containers []Container `toml:"container"`
}

// Container is a [[lxc.container]] entry.
type Container struct {
	Name Hostname `toml:"name"`
	Node Hostname `toml:"node"`
	IP   Addr     `toml:"ip"`
	IP6  Addr6    `toml:"ip6"` // optional, in [lxc] address6's prefix
	MAC  MAC      `toml:"mac"`
	// Rootfs is what the container runs: "oci:REF", an image the build
	// pulls and places in the image; "debian:SUITE", a root the build
	// makes from Debian's packages (required ones and Packages),
	// configured at the container's first start; empty, a container
	// made by hand.
	Rootfs   ContainerRootfs `toml:"rootfs"`
	Packages []string        `toml:"packages"` // for rootfs = "debian:SUITE"
	// Runs are the node's daemons (RunsDaemons: haproxy, i2pd) the
	// container runs in the node's place, their packages installed
	// besides Packages. Such a container shares its node's network, so
	// it has no ip, ip6 or mac, and no [[service]] names it.
	Runs []string `toml:"runs"`
}

// Backup is the [backup] table.
type Backup struct {
	Schedule  Schedule `toml:"schedule"`
	Keep      int      `toml:"keep"`
	Subvolume string   `toml:"subvolume"` // default "/"
	Dir       string   `toml:"dir"`       // default "/.snapshots"
	// Containers also snapshots /var/lib/lxc, the containers' own
	// subvolume, on the same schedule (and exports it); default true
	// when [lxc] is set.
	Containers *bool         `toml:"containers"`
	Target     *BackupTarget `toml:"target"`
}

// BackupTarget is the [backup.target] table: the SSH host each snapshot
// is exported to after it is taken.
type BackupTarget struct {
	// Host is user@host; user@NODE names a node of the inventory by its
	// name and is reached at its ip.
	Host string `toml:"host"`
	Port int    `toml:"port"` // default 22
	// Dir is the directory on the target; each node exports into
	// DIR/HOSTNAME, so one target serves the whole fleet.
	Dir string `toml:"dir"`
	// Keep is the target's retention per subvolume; 0 keeps all.
	Keep int `toml:"keep"`
	// HostKeys are the target's public host keys ("ssh-ed25519 AAAA..."),
	// the only ones the node accepts: take them from the target's
	// /etc/ssh/ssh_host_*_key.pub.
	HostKeys []SSHKey `toml:"host_keys"`
}

// Node is a [[node]] inventory entry. It needs at least one of the
// identity keys mac, serial_number and card_serial (plan.KeyOrder).
type Node struct {
	Name         Hostname     `toml:"name"`
	MAC          MAC          `toml:"mac"`
	SerialNumber SerialNumber `toml:"serial_number"`
	CardSerial   CardSerial   `toml:"card_serial"`
	IP           Addr         `toml:"ip"`
	Role         Role         `toml:"role"`
	Netboot      Netboot      `toml:"netboot"`
	Governor     Governor     `toml:"governor"` // overrides [power]
}

// Error is one problem in a config file. Line is 0 when unknown.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Load reads and parses a config file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

var decodeErrRE = regexp.MustCompile(`^toml: line (\d+) (\(last key [^)]*\)): (.*)$`)

// Parse parses and validates a config; name is used in error messages. All
// problems found are returned together (errors.Join of *Error, by line).
func Parse(name string, data []byte) (*Config, error) {
	c := &Config{file: name}
	md, err := toml.Decode(string(data), c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &Error{name, pe.Position.Line, pe.Message}
		}
		if m := decodeErrRE.FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			return nil, &Error{name, line, m[3] + " " + m[2]}
		}
		return nil, &Error{name, 0, strings.TrimPrefix(err.Error(), "toml: ")}
	}
	c.loc = newLocator(data, md.Keys())
	var errs []*Error
	reported := map[string]bool{}
	for _, k := range md.Undecoded() {
		ks := k.String()
		if reported[ks] || reported[k[:len(k)-1].String()] && len(k) > 1 {
			reported[ks] = true
			continue
		}
		reported[ks] = true
		where := "at top level"
		if len(k) > 1 {
			where = "in [" + k[:len(k)-1].String() + "]"
		}
		errs = append(errs, &Error{name, c.loc.first(ks), fmt.Sprintf("unknown key %q %s (expected one of: %s)",
			k[len(k)-1], where, strings.Join(keysAt(reflect.TypeOf(*c), k[:len(k)-1]), ", "))})
	}
	errs = append(errs, c.validate()...)
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
		all := make([]error, len(errs))
		for i, e := range errs {
			all[i] = e
		}
		if len(all) == 1 {
			return nil, all[0]
		}
		return nil, errors.Join(all...)
	}
	return c, nil
}

// keysAt lists the TOML keys of the struct reached by path from t.
func keysAt(t reflect.Type, path []string) []string {
	for _, p := range path {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return nil
		}
		found := false
		for i := 0; i < t.NumField(); i++ {
			if f := t.Field(i); f.Tag.Get("toml") == p {
				t, found = f.Type, true
				break
			}
		}
		if !found {
			return nil
		}
	}
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	var keys []string
	if t.Kind() == reflect.Struct {
		for i := 0; i < t.NumField(); i++ {
			if k := t.Field(i).Tag.Get("toml"); k != "" {
				keys = append(keys, k)
			}
		}
	}
	return keys
}

// locator finds the lines of keys. The decoder reports lines only for its
// own errors, so for checks across values (duplicates, subnets) we map
// MetaData.Keys(), which come in document order, back onto the source by
// scanning forward for each key's last name.
type locator struct {
	lines map[string][]int
}

func newLocator(data []byte, keys []toml.Key) *locator {
	src := strings.Split(string(data), "\n")
	l := &locator{lines: map[string][]int{}}
	cur := 0
	res := map[string]*regexp.Regexp{}
	for _, k := range keys {
		last := regexp.QuoteMeta(k[len(k)-1])
		re := res[last]
		if re == nil {
			re = regexp.MustCompile(`(^|[\s{,.\[])("` + last + `"|'` + last + `'|` + last + `)\s*(=|\.|\])`)
			res[last] = re
		}
		line := 0
		for i := cur; i < len(src); i++ {
			s := src[i]
			if h := strings.Index(s, "#"); h >= 0 && !strings.ContainsAny(s[:h], `"'`) {
				s = s[:h]
			}
			if re.MatchString(s) {
				line, cur = i+1, i
				break
			}
		}
		l.lines[k.String()] = append(l.lines[k.String()], line)
	}
	return l
}

// first returns the line of a key's first occurrence, or 0.
func (l *locator) first(key string) int {
	if ls := l.lines[key]; len(ls) > 0 {
		return ls[0]
	}
	return 0
}

// at returns the line of field in the i-th element of an array of tables
// (field "" for the element itself), or 0.
func (l *locator) at(array string, i int, field string) int {
	heads := l.lines[array]
	if field == "" {
		if i < len(heads) {
			return heads[i]
		}
		return 0
	}
	fl := l.lines[array+"."+field]
	if len(heads) <= 1 && len(fl) > i { // inline array of tables
		return fl[i]
	}
	if i >= len(heads) {
		return 0
	}
	end := int(^uint(0) >> 1)
	if i+1 < len(heads) {
		end = heads[i+1]
	}
	for _, x := range fl {
		if x >= heads[i] && x < end {
			return x
		}
	}
	return heads[i]
}
