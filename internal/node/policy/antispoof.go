package policy

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/cluster/plan"
)

// The cluster's switches are unmanaged, so nothing outside the node stops
// a container from using another container's address: the node itself
// pins each container with a pinned IP and MAC to them, in a table of
// family bridge (also named Table, "nodeinit"); here haproxy has an ip6
// and web has none:
//
//	table bridge nodeinit {
//		chain prerouting {
//			type filter hook prerouting priority filter; policy accept;
//			iifname "vc-haproxy" jump ct-haproxy
//			iifname "vc-web" jump ct-web
//		}
//
//		chain ct-haproxy {
//			ether saddr 00:16:3e:00:00:10 icmp type redirect counter packets 0 bytes 0 drop
//			ether saddr 00:16:3e:00:00:10 ether type ip udp sport 67 counter packets 0 bytes 0 drop
//			ether saddr 00:16:3e:00:00:10 icmpv6 type nd-router-advert counter packets 0 bytes 0 drop
//			ether saddr 00:16:3e:00:00:10 icmpv6 type nd-redirect counter packets 0 bytes 0 drop
//			ether saddr 00:16:3e:00:00:10 ether type ip6 udp sport 547 counter packets 0 bytes 0 drop
//			ether saddr 00:16:3e:00:00:10 ip saddr 10.0.3.10 accept
//			ether saddr 00:16:3e:00:00:10 arp htype 1 arp ptype ip arp hlen 6 arp plen 4 arp saddr ether 00:16:3e:00:00:10 arp saddr ip 10.0.3.10 accept
//			ether saddr 00:16:3e:00:00:10 icmpv6 type nd-neighbor-advert @th,64,128 != 0xfd000003000000000000000000000010 @th,64,128 & 0xffc00000000000000000000000000000 != 0xfe800000000000000000000000000000 counter packets 0 bytes 0 drop
//			ether saddr 00:16:3e:00:00:10 ip6 saddr fd00:3::10 accept
//			ether saddr 00:16:3e:00:00:10 ip6 saddr fe80::/10 accept
//			ether saddr 00:16:3e:00:00:10 ip6 saddr :: meta l4proto ipv6-icmp accept
//			counter packets 0 bytes 0 drop
//		}
//
//		chain ct-web {
//			(the same five router rules, with web's MAC)
//			ether saddr 00:16:3e:00:00:11 ip saddr 10.0.3.11 accept
//			ether saddr 00:16:3e:00:00:11 arp htype 1 arp ptype ip arp hlen 6 arp plen 4 arp saddr ether 00:16:3e:00:00:11 arp saddr ip 10.0.3.11 accept
//			ether saddr 00:16:3e:00:00:11 ether type ip6 accept
//			counter packets 0 bytes 0 drop
//		}
//	}
//
// (as nft lists it; "ether type ip", "ether type arp" and "ether type ip6"
// are in the rules, nft leaves them out as implied by the ip, arp, ip6
// and icmpv6 matches; @th,64,128 is the neighbour advertisement's target
// address).
//
// Bridge prerouting sees every frame entering the bridge from a port,
// whether it is forwarded to another container or delivered to the host.
// The per-container chain first drops what only a router sends (see
// routerRules), then is an allow list: anything else from the veth
// (another source MAC, IPv4 or IPv6 address, forged ARP, VLAN-tagged or
// other protocols) is dropped and counted in the chain's counters, which
// Report adds up.
//
// A container with an ip6 sends IPv6 from it, from a link-local address
// or, for ICMPv6 (duplicate address detection), from ::, and advertises
// (ICMPv6 neighbour advertisement) only its ip6 and link-local addresses:
// see ipv6Rules. A container without one keeps its IPv6 frames held to its
// pinned MAC only, any IPv6 source passes, and Report says so.
// ARP probes (sender IP 0.0.0.0, RFC 5227) are dropped: a probe that
// gets no answer only tells the container its address is free.
//
// The rules match the veth by the name pinContainer writes (VethName). A
// container created after this boot has LXC's random veth name, and so no
// filter, until the next boot pins it, as with its IP and MAC.
const antispoofHook = "prerouting"

// bridgeFilterPriority is "priority filter" of the bridge family (-200),
// nftables' NF_BR_PRI_FILTER_BRIDGED.
var bridgeFilterPriority = nftables.ChainPriorityRef(-200)

// antispoofChain is the chain of one container's rules.
func antispoofChain(container string) string { return "ct-" + container }

// VethName is the host-side veth of container name: pinContainer writes it
// as lxc.net.0.veth.pair, and the antispoof rules match on it. It is "vc-"
// and the name when that fits IFNAMSIZ (15 characters), else "vc-", the
// name's first 6 characters, "_" and 5 hex digits of its FNV-1a hash.
// Not "ve-": systemd-networkd's 80-container-ve.network claims ve-* links
// (systemd-nspawn's), serves DHCP on them and takes them off the bridge;
// vb-, vz- and vt- are its too. Container names are hostnames, without
// "_", so a shortened name never equals a whole one; two long names with
// the same start differ by their hash, and Antispoof refuses the rare pair
// that does not.
func VethName(name string) string {
	if len(name) <= 12 {
		return "vc-" + name
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	return fmt.Sprintf("vc-%s_%05x", name[:6], h.Sum32()&0xfffff)
}

// pin is one container the rules pin.
type pin struct {
	name, veth string
	ip         netip.Addr
	ip6        netip.Addr // invalid: IPv6 is held to the MAC only
	mac        net.HardwareAddr
}

// pins returns this node's containers with a pinned IP and MAC (and their
// ip6, if any), the names of those without (not filtered), and an error
// per container whose address does not parse or whose veth name another
// one has.
func pins(x *plan.LXC) (ps []pin, unpinned []string, errs []error) {
	if x == nil {
		return nil, nil, nil
	}
	veths := map[string]string{}
	for _, ct := range x.Containers {
		if len(ct.Runs) > 0 {
			continue // no veth: it shares the node's network
		}
		if ct.IP == "" || ct.MAC == "" {
			unpinned = append(unpinned, ct.Name)
			continue
		}
		pr, err := netip.ParsePrefix(ct.IP)
		if err == nil && !pr.Addr().Is4() {
			err = errors.New("not IPv4")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("container %s: ip %q: %w", ct.Name, ct.IP, err))
			continue
		}
		var ip6 netip.Addr
		if ct.IP6 != "" {
			pr6, err := netip.ParsePrefix(ct.IP6)
			if err == nil && (!pr6.Addr().Is6() || pr6.Addr().Is4In6()) {
				err = errors.New("not IPv6")
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("container %s: ip6 %q: %w", ct.Name, ct.IP6, err))
				continue
			}
			ip6 = pr6.Addr()
		}
		mac, err := net.ParseMAC(ct.MAC)
		if err == nil && len(mac) != 6 {
			err = errors.New("not an Ethernet MAC")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("container %s: mac %q: %w", ct.Name, ct.MAC, err))
			continue
		}
		v := VethName(ct.Name)
		if other, dup := veths[v]; dup {
			errs = append(errs, fmt.Errorf("container %s: host-side veth %s is also container %s's; rename one", ct.Name, v, other))
			continue
		}
		veths[v] = ct.Name
		ps = append(ps, pin{name: ct.Name, veth: v, ip: pr.Addr(), ip6: ip6, mac: mac})
	}
	return ps, unpinned, errs
}

// Antispoof installs the bridge-family rules that hold each pinned
// container to its IP (and ip6) and MAC (see antispoofHook). The table is
// deleted and rebuilt in one batch, as in Netfilter; with no pinned
// container it is only deleted.
func Antispoof(env Env) error {
	ps, _, errs := pins(env.Node.LXC)
	c, err := nftables.New()
	if err != nil {
		return err
	}
	if err := installAntispoof(c, ps); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func installAntispoof(c *nftables.Conn, ps []pin) error {
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyBridge)
	if err != nil {
		return fmt.Errorf("listing bridge nftables tables (kernel without nf_tables?): %w", err)
	}
	for _, t := range tables {
		if t.Name == Table {
			c.DelTable(t)
		}
	}
	if len(ps) == 0 {
		return c.Flush()
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyBridge, Name: Table})
	accept := nftables.ChainPolicyAccept
	pre := c.AddChain(&nftables.Chain{Name: antispoofHook, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: bridgeFilterPriority, Policy: &accept})
	for _, p := range ps {
		in, _, err := match(p.veth, "", "", "")
		if err != nil {
			return fmt.Errorf("container %s: %w", p.name, err)
		}
		ch := c.AddChain(&nftables.Chain{Name: antispoofChain(p.name), Table: t})
		for _, r := range antispoofRules(p) {
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: r})
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: append(in, &expr.Verdict{Kind: expr.VerdictJump, Chain: ch.Name})})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("bridge table %s (kernel without CONFIG_NF_TABLES_BRIDGE?): %w", Table, err)
	}
	return nil
}

// antispoofRules are the rules of one container's chain, in order.
func antispoofRules(p pin) [][]expr.Any {
	ip := p.ip.As4()
	eq := func(base expr.PayloadBase, off uint32, data []byte) []expr.Any {
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: base, Offset: off, Len: uint32(len(data))},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data},
		}
	}
	from := func(etherType uint16) []expr.Any {
		return append(eq(expr.PayloadBaseLLHeader, 6, p.mac), eq(expr.PayloadBaseLLHeader, 12, binaryutil.BigEndian.PutUint16(etherType))...)
	}
	accept := &expr.Verdict{Kind: expr.VerdictAccept}
	ipv4 := slices.Concat(from(unix.ETH_P_IP), eq(expr.PayloadBaseNetworkHeader, 12, ip[:]), []expr.Any{accept})
	// Ethernet/IPv4 ARP only (hardware type 1, protocol IPv4, lengths 6
	// and 4), so the sender fields are where the offsets say.
	arp := slices.Concat(from(unix.ETH_P_ARP),
		eq(expr.PayloadBaseNetworkHeader, 0, binaryutil.BigEndian.PutUint16(1)),
		eq(expr.PayloadBaseNetworkHeader, 2, binaryutil.BigEndian.PutUint16(unix.ETH_P_IP)),
		eq(expr.PayloadBaseNetworkHeader, 4, []byte{6}),
		eq(expr.PayloadBaseNetworkHeader, 5, []byte{4}),
		eq(expr.PayloadBaseNetworkHeader, 8, p.mac),
		eq(expr.PayloadBaseNetworkHeader, 14, ip[:]),
		[]expr.Any{accept})
	drop := []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}}
	rules := append(routerRules(from), ipv4, arp)
	if !p.ip6.IsValid() {
		ipv6 := append(from(unix.ETH_P_IPV6), accept)
		return append(rules, ipv6, drop)
	}
	return append(rules, append(ipv6Rules(p, from(unix.ETH_P_IPV6), accept), drop)...)
}

// routerRules drop, and count, what only the node as the bridge's router
// may send, before any rule could accept it: ICMP redirects (IPv4 type 5,
// ICMPv6 type 137) and router advertisements (ICMPv6 type 134), with
// which a container would make the others send it their traffic, and
// replies from a DHCP or DHCPv6 server port (UDP source port 67, 547),
// with which it would hand them addresses and a gateway of its choice.
// from matches the container's MAC and an ethertype. Every pinned
// container gets them, with or without an ip6.
func routerRules(from func(etherType uint16) []expr.Any) [][]expr.Any {
	l4 := func(proto byte) []expr.Any {
		return []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}}}
	}
	th := func(off uint32, data []byte) []expr.Any {
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: uint32(len(data))},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data},
		}
	}
	drop := []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}}
	port := binaryutil.BigEndian.PutUint16
	return [][]expr.Any{
		slices.Concat(from(unix.ETH_P_IP), l4(unix.IPPROTO_ICMP), th(0, []byte{5}), drop),
		slices.Concat(from(unix.ETH_P_IP), l4(unix.IPPROTO_UDP), th(0, port(67)), drop),
		slices.Concat(from(unix.ETH_P_IPV6), l4(unix.IPPROTO_ICMPV6), th(0, []byte{134}), drop),
		slices.Concat(from(unix.ETH_P_IPV6), l4(unix.IPPROTO_ICMPV6), th(0, []byte{137}), drop),
		slices.Concat(from(unix.ETH_P_IPV6), l4(unix.IPPROTO_UDP), th(0, port(547)), drop),
	}
}

// ipv6Rules hold a container with an ip6 to its addresses (see
// antispoofHook); from matches its MAC and ethertype IPv6.
//
// The link-local addresses are all of fe80::/10, not one: the kernel
// makes a container's from its MAC (EUI-64) or at random (addr_gen_mode
// stable-privacy or random), and a link-local address never leaves the
// link, so one on the bridge can take no routed traffic. The unspecified
// address :: is the source of duplicate address detection (and of MLD
// before a link-local address is ready), both ICMPv6, and nothing else.
//
// ICMPv6 and its header are found by the kernel past any extension
// headers (meta l4proto, the transport header base): a neighbour
// advertisement behind a destination options header is still one.
func ipv6Rules(p pin, from []expr.Any, accept expr.Any) [][]expr.Any {
	ip6 := p.ip6.As16()
	load := func(base expr.PayloadBase, off, n uint32) *expr.Payload {
		return &expr.Payload{DestRegister: 1, Base: base, Offset: off, Len: n}
	}
	src := func() *expr.Payload { return load(expr.PayloadBaseNetworkHeader, 8, 16) }
	cmp := func(op expr.CmpOp, data []byte) *expr.Cmp { return &expr.Cmp{Op: op, Register: 1, Data: data} }
	// linkLocal compares the address in register 1 with fe80::/10.
	linkLocal := func(op expr.CmpOp) []expr.Any {
		mask, ll := make([]byte, 16), make([]byte, 16)
		mask[0], mask[1], ll[0], ll[1] = 0xff, 0xc0, 0xfe, 0x80
		return []expr.Any{&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 16, Mask: mask, Xor: make([]byte, 16)}, cmp(op, ll)}
	}
	icmpv6 := []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, cmp(expr.CmpOpEq, []byte{unix.IPPROTO_ICMPV6})}
	// A neighbour advertisement (type 136) for another address is how a
	// container would take it over, as a forged ARP reply is for IPv4:
	// dropped and counted here, before the source rules could accept it.
	// The target (at offset 8) is neither the pinned address nor
	// link-local: compared with one, then masked in place for the other.
	naOther := slices.Concat(from, icmpv6,
		[]expr.Any{load(expr.PayloadBaseTransportHeader, 0, 1), cmp(expr.CmpOpEq, []byte{136})},
		[]expr.Any{load(expr.PayloadBaseTransportHeader, 8, 16), cmp(expr.CmpOpNeq, ip6[:])}, linkLocal(expr.CmpOpNeq),
		[]expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}})
	pinned := slices.Concat(from, []expr.Any{src(), cmp(expr.CmpOpEq, ip6[:]), accept})
	ll := slices.Concat(from, []expr.Any{src()}, linkLocal(expr.CmpOpEq), []expr.Any{accept})
	unspec := slices.Concat(from, []expr.Any{src(), cmp(expr.CmpOpEq, make([]byte, 16))}, icmpv6, []expr.Any{accept})
	return [][]expr.Any{naOther, pinned, ll, unspec}
}

// cmpData lists the values a rule's comparisons and jumps hold, which is
// what Report checks a chain against: the pinned MAC and IP, the veth name
// and the chain jumped to.
func cmpData(exprs []expr.Any) [][]byte {
	var d [][]byte
	for _, e := range exprs {
		switch e := e.(type) {
		case *expr.Cmp:
			d = append(d, e.Data)
		case *expr.Verdict:
			d = append(d, []byte(fmt.Sprint(e.Kind, e.Chain)))
		}
	}
	return d
}

func sameData(a, b [][]byte) bool {
	return slices.EqualFunc(a, b, bytes.Equal)
}

// antispoofDrops reads the drop counter of each container's chain in the
// calling thread's namespace; ok is false when the table is not there.
func antispoofDrops(c *nftables.Conn) (drops map[string]uint64, ok bool, err error) {
	t := &nftables.Table{Family: nftables.TableFamilyBridge, Name: Table}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyBridge)
	if err != nil {
		return nil, false, fmt.Errorf("listing bridge chains: %w", err)
	}
	drops = map[string]uint64{}
	for _, ch := range chains {
		if ch.Table.Name != Table {
			continue
		}
		ok = true
		name, isCt := strings.CutPrefix(ch.Name, "ct-")
		if !isCt {
			continue
		}
		rules, err := c.GetRules(t, ch)
		if err != nil {
			return nil, true, fmt.Errorf("container %s: chain %s: %w", name, ch.Name, err)
		}
		drops[name] = 0
		for _, r := range rules {
			for _, e := range r.Exprs {
				if n, isCounter := e.(*expr.Counter); isCounter {
					drops[name] += n.Packets
				}
			}
		}
	}
	return drops, ok, nil
}

// reportAntispoof reads the bridge table back: one line per unpinned
// container or bad entry, then the table's line, flagged when a pinned
// container's chain or jump is missing or differs from the plan.
func reportAntispoof(x *plan.LXC) (lines []string, ok bool) {
	ps, unpinned, errs := pins(x)
	ok = len(errs) == 0
	for _, n := range unpinned {
		lines = append(lines, fmt.Sprintf("antispoof: %s has no pinned address: not filtered", n))
	}
	for _, p := range ps {
		if !p.ip6.IsValid() {
			lines = append(lines, fmt.Sprintf("antispoof: %s has no pinned ip6: its IPv6 is held to its MAC only", p.name))
		}
	}
	for _, err := range errs {
		lines = append(lines, fmt.Sprintf("antispoof: %v", err))
	}
	line, good := antispoofTable(ps)
	return append(lines, line), ok && good
}

func antispoofTable(ps []pin) (string, bool) {
	head := "nftables table bridge " + Table
	c, err := nftables.New()
	if err != nil {
		return fmt.Sprintf("%s: %v", head, err), len(ps) == 0
	}
	drops, there, err := antispoofDrops(c)
	if err != nil {
		return fmt.Sprintf("%s: %v", head, err), false
	}
	if !there {
		if len(ps) > 0 {
			return fmt.Sprintf("%s: MISSING (plan: %d containers pinned)", head, len(ps)), false
		}
		return fmt.Sprintf("nftables: no table bridge %s (no pinned containers)", Table), true
	}
	t := &nftables.Table{Family: nftables.TableFamilyBridge, Name: Table}
	var jumps [][][]byte
	if rules, err := c.GetRules(t, &nftables.Chain{Name: antispoofHook, Table: t}); err == nil {
		for _, r := range rules {
			jumps = append(jumps, cmpData(r.Exprs))
		}
	}
	installed := len(drops)
	var total uint64
	var issues, counts []string
	for _, p := range ps {
		in, _, _ := match(p.veth, "", "", "")
		jump := cmpData(append(in, &expr.Verdict{Kind: expr.VerdictJump, Chain: antispoofChain(p.name)}))
		n, has := drops[p.name]
		rules, err := c.GetRules(t, &nftables.Chain{Name: antispoofChain(p.name), Table: t})
		want := antispoofRules(p)
		same := has && err == nil && len(rules) == len(want) && slices.ContainsFunc(jumps, func(j [][]byte) bool { return sameData(j, jump) })
		for i := 0; same && i < len(want); i++ {
			same = sameData(cmpData(rules[i].Exprs), cmpData(want[i]))
		}
		switch {
		case !has:
			issues = append(issues, p.name+" MISSING")
		case !same:
			issues = append(issues, p.name+" differs from the plan")
		}
		total += n
		if n > 0 {
			counts = append(counts, fmt.Sprintf("%s %d", p.name, n))
		}
		delete(drops, p.name)
	}
	for n := range drops {
		issues = append(issues, n+" not in the plan")
	}
	slices.Sort(issues)
	line := fmt.Sprintf("%s: %d containers pinned, %d frames dropped", head, installed, total)
	if len(counts) > 0 {
		line += " (" + strings.Join(counts, ", ") + ")"
	}
	if len(issues) > 0 {
		return line + " (plan: " + strings.Join(issues, "; ") + ")", false
	}
	return line, true
}
