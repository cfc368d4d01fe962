package policy

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/cluster/plan"
	"github.com/mkimage/mkimage/internal/testenv"
)

func TestVethName(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"haproxy", "vc-haproxy"},
		{"abcdefghijkl", "vc-abcdefghijkl"}, // 12: fits as it is
		{"abcdefghijklm", "vc-abcdef_"},     // 13: shortened, hash follows
		{"i2p-router-for-tests", "vc-i2p-ro_"},
	} {
		got := VethName(tc.name)
		if len(got) > 15 || !strings.HasPrefix(got, tc.want) || (len(tc.name) <= 12) != (got == tc.want) {
			t.Errorf("VethName(%q) = %q, want %q (at most 15 characters)", tc.name, got, tc.want)
		}
		if VethName(tc.name) != got {
			t.Errorf("VethName(%q) not deterministic", tc.name)
		}
	}
	// Names that are the same after shortening still differ.
	if a, b := VethName("webserver-one"), VethName("webserver-two"); a == b {
		t.Errorf("webserver-one and webserver-two both get %s", a)
	}
	// A shortened name never equals a whole one: hostnames have no "_".
	if got := VethName("webserver-one"); !strings.Contains(got, "_") {
		t.Errorf("shortened name %s without _", got)
	}
}

// needBridgeNftables skips t when the kernel cannot hook nftables into a
// bridge (no CONFIG_NF_TABLES_BRIDGE), trying it in namespace ns.
func needBridgeNftables(t *testing.T, ns string) {
	t.Helper()
	err := testenv.InNetns(ns, func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tb := c.AddTable(&nftables.Table{Family: nftables.TableFamilyBridge, Name: "probe"})
		c.AddChain(&nftables.Chain{Name: "p", Table: tb, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPrerouting, Priority: bridgeFilterPriority})
		if err := c.Flush(); err != nil {
			return err
		}
		c.DelTable(tb)
		return c.Flush()
	})
	if err != nil {
		t.Skipf("bridge nftables unavailable: %v", err)
	}
}

// udpSink records the payloads a UDP socket in a namespace receives.
type udpSink struct {
	mu  sync.Mutex
	got map[string]bool
}

func newUDPSink(t *testing.T, ns, addr string) *udpSink {
	ap := netip.MustParseAddrPort(addr)
	return newSink(t, ns, func() (net.PacketConn, error) {
		return net.ListenUDP(udpNet(ap.Addr()), net.UDPAddrFromAddrPort(ap))
	}, func(b []byte) (string, bool) { return string(b), true })
}

// newICMPSink records the ICMP (v4 false) or ICMPv6 messages a raw
// socket in namespace ns receives, whatever their type: the kernel hands
// raw sockets a copy before it acts on (or ignores) a message. The key is
// the type and the bytes after the message's first skip bytes.
func newICMPSink(t *testing.T, ns string, v6 bool, skip int) *udpSink {
	network, addr := "ip4:icmp", "0.0.0.0"
	if v6 {
		network, addr = "ip6:ipv6-icmp", "::"
	}
	return newSink(t, ns, func() (net.PacketConn, error) { return net.ListenPacket(network, addr) },
		func(b []byte) (string, bool) { return fmt.Sprintf("%d %s", b[0], b[min(skip, len(b)):]), len(b) > skip })
}

// newSink records what the socket listen opens in namespace ns
// receives, each datagram under the key key gives it (if any).
func newSink(t *testing.T, ns string, listen func() (net.PacketConn, error), key func([]byte) (string, bool)) *udpSink {
	t.Helper()
	var c net.PacketConn
	if err := testenv.InNetns(ns, func() (err error) {
		c, err = listen()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := &udpSink{got: map[string]bool{}}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			if k, ok := key(buf[:n]); ok {
				s.mu.Lock()
				s.got[k] = true
				s.mu.Unlock()
			}
		}
	}()
	return s
}

// sendICMP sends one ICMP (to an IPv4 dst) or ICMPv6 message of type typ
// and code 0, body after its checksum, from namespace ns and address src
// ("" for the kernel's choice). The kernel sums ICMPv6; IPv4 is summed
// here.
func sendICMP(ns, src, dst string, typ byte, body []byte) error {
	return testenv.InNetns(ns, func() error {
		d := netip.MustParseAddr(dst)
		network := "ip4:icmp"
		if d.Is6() {
			network = "ip6:ipv6-icmp"
		}
		var la *net.IPAddr
		if src != "" {
			la = &net.IPAddr{IP: net.ParseIP(src)}
		}
		c, err := net.DialIP(network, la, &net.IPAddr{IP: d.AsSlice()})
		if err != nil {
			return err
		}
		defer c.Close()
		msg := append([]byte{typ, 0, 0, 0}, body...)
		if d.Is4() {
			var sum uint32
			for i := 0; i < len(msg); i += 2 {
				w := uint32(msg[i]) << 8
				if i+1 < len(msg) {
					w |= uint32(msg[i+1])
				}
				sum += w
			}
			for sum > 0xffff {
				sum = sum>>16 + sum&0xffff
			}
			binary.BigEndian.PutUint16(msg[2:], ^uint16(sum))
		}
		_, err = c.Write(msg)
		return err
	})
}

// udpNet is "udp4" or "udp6" for a's family; a "udp6" socket is IPv6
// only, so one on [::] and one on an IPv4 address share a port.
func udpNet(a netip.Addr) string {
	if a.Is4() {
		return "udp4"
	}
	return "udp6"
}

// saw reports whether payload arrives within a second.
func (s *udpSink) saw(payload string) bool {
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		s.mu.Lock()
		ok := s.got[payload]
		s.mu.Unlock()
		if ok {
			return true
		}
	}
	return false
}

// sendUDP sends payload from namespace ns, from address src ("" for the
// kernel's choice; "10.0.3.10:67" or "[fd00:3::10]:547" with a port), to dst (IPv4 or IPv6, "[fe80::1%eth0]:5600" too).
func sendUDP(ns, src, dst, payload string) error {
	return testenv.InNetns(ns, func() error {
		var la *net.UDPAddr
		if sp, err := netip.ParseAddrPort(src); err == nil {
			la = net.UDPAddrFromAddrPort(sp)
		} else if src != "" {
			la = &net.UDPAddr{IP: net.ParseIP(src)}
		}
		ap := netip.MustParseAddrPort(dst)
		c, err := net.DialUDP(udpNet(ap.Addr()), la, net.UDPAddrFromAddrPort(ap))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte(payload))
		return err
	})
}

// sendARP sends one Ethernet/IPv4 ARP frame out of eth0 in namespace ns,
// from eth0's own MAC, with a raw AF_PACKET socket: what a container that
// forges ARP can do without any tool.
func sendARP(ns string, op uint16, sha net.HardwareAddr, spa string, tpa string) error {
	return testenv.InNetns(ns, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		proto := binary.BigEndian.Uint16(binary.NativeEndian.AppendUint16(nil, unix.ETH_P_ARP))
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(proto))
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
		f := append(append([]byte{}, bcast...), ifi.HardwareAddr...)
		f = binary.BigEndian.AppendUint16(f, unix.ETH_P_ARP)
		f = append(f, 0, 1, 8, 0, 6, 4)
		f = binary.BigEndian.AppendUint16(f, op)
		s, tg := netip.MustParseAddr(spa).As4(), netip.MustParseAddr(tpa).As4()
		f = append(append(f, sha...), s[:]...)
		f = append(append(f, make([]byte, 6)...), tg[:]...)
		sa := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Protocol: proto, Halen: 6}
		copy(sa.Addr[:], bcast)
		return unix.Sendto(fd, f, 0, sa)
	})
}

// sendNA sends one ICMPv6 neighbour advertisement out of eth0 in
// namespace ns, from src (an address eth0 has) to all nodes (ff02::1),
// for target with target link-layer address tll and the override flag:
// what a container that claims target sends. The kernel fills in the
// checksum of a raw ICMPv6 socket; the hop limit is 255, or receivers
// ignore it (RFC 4861), and the multicast is not looped back, or the
// sender would take its own advertisement.
func sendNA(ns, src, target string, tll net.HardwareAddr) error {
	return testenv.InNetns(ns, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_ICMPV6)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, 255); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP, 0); err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrInet6{Addr: netip.MustParseAddr(src).As16()}); err != nil {
			return fmt.Errorf("bind %s: %w", src, err)
		}
		tg := netip.MustParseAddr(target).As16()
		msg := []byte{136, 0, 0, 0, 0x20, 0, 0, 0} // type, code, checksum, flags O
		msg = append(append(msg, tg[:]...), 2, 1)  // option 2 (target link-layer address), 8 bytes
		msg = append(msg, tll...)
		return unix.Sendto(fd, msg, 0, &unix.SockaddrInet6{Addr: netip.MustParseAddr("ff02::1").As16(), ZoneId: uint32(ifi.Index)})
	})
}

// waitDAD waits until no address of dev in namespace ns is tentative,
// that is until IPv6 duplicate address detection is done, and fails t if
// it failed.
func waitDAD(t *testing.T, ns, dev string) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out := sh(t, "ip", "-n", ns, "-6", "addr", "show", "dev", dev, "tentative")
		if strings.Contains(out, "dadfailed") {
			t.Fatalf("%s %s: duplicate address detection failed:\n%s", ns, dev, out)
		}
		if out == "" {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%s %s: addresses still tentative:\n%s", ns, dev, out)
		}
	}
}

// linkLocal is the IPv6 link-local address of dev in namespace ns.
func linkLocal(t *testing.T, ns, dev string) string {
	t.Helper()
	var ll string
	if err := testenv.InNetns(ns, func() error {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			return err
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_V6)
		for _, a := range addrs {
			if a.IP.IsLinkLocalUnicast() {
				ll = a.IP.String()
			}
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if ll == "" {
		t.Fatalf("%s %s has no link-local address", ns, dev)
	}
	return ll
}

// neighMAC is the MAC namespace ns's neighbour table has for ip (IPv4 or
// IPv6) on dev (nil when it has none).
func neighMAC(ns, dev, ip string) (mac net.HardwareAddr, err error) {
	family := netlink.FAMILY_V4
	if netip.MustParseAddr(ip).Is6() {
		family = netlink.FAMILY_V6
	}
	err = testenv.InNetns(ns, func() error {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			return err
		}
		ns, err := netlink.NeighList(l.Attrs().Index, family)
		for _, n := range ns {
			if n.IP.String() == ip {
				mac = n.HardwareAddr
			}
		}
		return err
	})
	return mac, err
}

// bridgeRuleset dumps the bridge table through netlink, counters zeroed,
// to compare two applies.
func bridgeRuleset(ns string) (string, error) {
	var b strings.Builder
	err := testenv.InNetns(ns, func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyBridge)
		if err != nil {
			return err
		}
		for _, ch := range chains {
			if ch.Table.Name != Table {
				continue
			}
			fmt.Fprintf(&b, "chain %s hook %v prio %v\n", ch.Name, ch.Hooknum != nil, ch.Priority != nil)
			rules, err := c.GetRules(ch.Table, ch)
			if err != nil {
				return err
			}
			for _, r := range rules {
				for _, e := range r.Exprs {
					fmt.Fprintf(&b, " %+v", e)
				}
				b.WriteString("\n")
			}
		}
		return nil
	})
	return b.String(), err
}

func drops(t *testing.T, ns string) map[string]uint64 {
	t.Helper()
	var d map[string]uint64
	if err := testenv.InNetns(ns, func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		d, _, err = antispoofDrops(c)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return d
}

// routerRuleLines are routerRules for a container with MAC mac, as nft
// lists them in a chain.
func routerRuleLines(mac string) string {
	var b strings.Builder
	for _, m := range []string{"icmp type redirect", "ether type ip udp sport 67", "icmpv6 type nd-router-advert", "icmpv6 type nd-redirect", "ether type ip6 udp sport 547"} {
		fmt.Fprintf(&b, "\t\tether saddr %s %s counter packets 0 bytes 0 drop\n", mac, m)
	}
	return b.String()
}

const antispoofRuleset = `table bridge nodeinit {
	chain prerouting {
		type filter hook prerouting priority filter; policy accept;
		iifname "vc-haproxy" jump ct-haproxy
		iifname "vc-i2p-ro_f4fea" jump ct-i2p-router-for-tests
	}

	chain ct-haproxy {
		ether saddr 00:16:3e:00:00:10 icmp type redirect counter packets 0 bytes 0 drop
		ether saddr 00:16:3e:00:00:10 ether type ip udp sport 67 counter packets 0 bytes 0 drop
		ether saddr 00:16:3e:00:00:10 icmpv6 type nd-router-advert counter packets 0 bytes 0 drop
		ether saddr 00:16:3e:00:00:10 icmpv6 type nd-redirect counter packets 0 bytes 0 drop
		ether saddr 00:16:3e:00:00:10 ether type ip6 udp sport 547 counter packets 0 bytes 0 drop
		ether saddr 00:16:3e:00:00:10 ip saddr 10.0.3.10 accept
		ether saddr 00:16:3e:00:00:10 arp htype 1 arp ptype ip arp hlen 6 arp plen 4 arp saddr ether 00:16:3e:00:00:10 arp saddr ip 10.0.3.10 accept
		ether saddr 00:16:3e:00:00:10 icmpv6 type nd-neighbor-advert @th,64,128 != 0xfd000003000000000000000000000010 @th,64,128 & 0xffc00000000000000000000000000000 != 0xfe800000000000000000000000000000 counter packets 0 bytes 0 drop
		ether saddr 00:16:3e:00:00:10 ip6 saddr fd00:3::10 accept
		ether saddr 00:16:3e:00:00:10 ip6 saddr fe80::/10 accept
		ether saddr 00:16:3e:00:00:10 ip6 saddr :: meta l4proto ipv6-icmp accept
		counter packets 0 bytes 0 drop
	}

	chain ct-i2p-router-for-tests {
		ether saddr 00:16:3e:00:00:11 icmp type redirect counter packets 0 bytes 0 drop
		ether saddr 00:16:3e:00:00:11 ether type ip udp sport 67 counter packets 0 bytes 0 drop
		ether saddr 00:16:3e:00:00:11 icmpv6 type nd-router-advert counter packets 0 bytes 0 drop
		ether saddr 00:16:3e:00:00:11 icmpv6 type nd-redirect counter packets 0 bytes 0 drop
		ether saddr 00:16:3e:00:00:11 ether type ip6 udp sport 547 counter packets 0 bytes 0 drop
		ether saddr 00:16:3e:00:00:11 ip saddr 10.0.3.11 accept
		ether saddr 00:16:3e:00:00:11 arp htype 1 arp ptype ip arp hlen 6 arp plen 4 arp saddr ether 00:16:3e:00:00:11 arp saddr ip 10.0.3.11 accept
		ether saddr 00:16:3e:00:00:11 ether type ip6 accept
		counter packets 0 bytes 0 drop
	}
}
`

// TestAntispoof builds a node namespace with the LXC bridge and three
// container namespaces on it, their host-side veths named as pinContainer
// names them, applies the policy and sends real frames: the honest ones
// pass, forged IPv4 and IPv6 sources, a changed MAC, forged ARP and a
// neighbour advertisement for another address are dropped and counted,
// and the node learns no forged neighbour. Then it applies a plan without
// containers and sends the same frames again: all pass, so each attack is
// one the rules stop. The first container has a pinned ip6; the second
// has none, so its IPv6 is held to its MAC only (it may use any IPv6
// source); the third has no pinned MAC and is never filtered. Every
// namespace has an IPv6 address in the bridge's prefix, taken with
// duplicate address detection (from ::) under the rules.
func TestAntispoof(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "ip")
	N := testenv.NewNetns(t, "asn")
	needBridgeNftables(t, N)

	const (
		haproxy = "haproxy"
		i2p     = "i2p-router-for-tests" // longer than a veth name: shortened
		c2      = "c2"                   // no pinned MAC
		fakeMAC = "00:16:3e:00:00:99"
	)
	p := plan.Plan{Name: "node01", LXC: &plan.LXC{Bridge: "lxcbr0", Address: "10.0.3.1/24", Address6: "fd00:3::1/64", Network: "veth",
		Containers: []plan.Container{
			{Name: haproxy, IP: "10.0.3.10/24", IP6: "fd00:3::10/64", MAC: "00:16:3e:00:00:10"},
			{Name: i2p, IP: "10.0.3.11/24", MAC: "00:16:3e:00:00:11"},
			{Name: c2, IP: "10.0.3.12/24"},
		}}}
	log := &lines{}
	env := Env{Root: t.TempDir(), Proc: "/proc", Sys: t.TempDir(), Node: p, Log: log.logf}
	apply := func() {
		t.Helper()
		if err := testenv.InNetns(N, func() error { return Apply(context.Background(), env) }); err != nil {
			t.Fatalf("Apply: %v\n%s", err, strings.Join(log.l, "\n"))
		}
	}
	apply() // makes the bridge

	ns := map[string]string{}
	ipOf := map[string]string{}
	macOf := map[string]string{}
	ip6Of := map[string]string{haproxy: "fd00:3::10", i2p: "fd00:3::11", c2: "fd00:3::12"}
	for i, ct := range p.LXC.Containers {
		n := testenv.NewNetns(t, fmt.Sprintf("as%d", i))
		ns[ct.Name], ipOf[ct.Name] = n, strings.TrimSuffix(ct.IP, "/24")
		mac := ct.MAC
		if mac == "" {
			mac = "00:16:3e:00:00:12"
		}
		v := VethName(ct.Name)
		sh(t, "ip", "-n", N, "link", "add", v, "type", "veth", "peer", "name", "eth0", "netns", n)
		sh(t, "ip", "-n", N, "link", "set", v, "master", "lxcbr0", "up")
		sh(t, "ip", "-n", n, "link", "set", "eth0", "address", mac, "up")
		sh(t, "ip", "-n", n, "addr", "add", ct.IP, "dev", "eth0")
		sh(t, "ip", "-n", n, "addr", "add", ip6Of[ct.Name]+"/64", "dev", "eth0")
		macOf[ct.Name] = mac
	}
	for _, n := range ns {
		waitDAD(t, n, "eth0")
	}
	waitDAD(t, N, "lxcbr0")
	var brMAC string
	if err := testenv.InNetns(N, func() error {
		l, err := netlink.LinkByName("lxcbr0")
		if err == nil {
			brMAC = l.Attrs().HardwareAddr.String()
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	brLL, haproxyLL := linkLocal(t, N, "lxcbr0"), linkLocal(t, ns[haproxy], "eth0")
	node := newUDPSink(t, N, "10.0.3.1:5600")
	node6 := newUDPSink(t, N, "[::]:5600")
	peer := newUDPSink(t, ns[i2p], "10.0.3.11:5600")
	peer6 := newUDPSink(t, ns[i2p], "[fd00:3::11]:5600")
	// What only a router sends, to a peer: ICMP, ICMPv6 (the sink on
	// haproxy gets i2p's), a DHCP reply and a DHCPv6 reply.
	peerICMP, peerICMP6, haproxyICMP6 := newICMPSink(t, ns[i2p], false, 8), newICMPSink(t, ns[i2p], true, 16), newICMPSink(t, ns[haproxy], true, 16)
	peerDHCP, peerDHCP6 := newUDPSink(t, ns[i2p], "10.0.3.11:68"), newUDPSink(t, ns[i2p], "[fd00:3::11]:546")
	// icmp sends a message of type typ from container ct to dst, its
	// payload after a body of zeros (skip-4 bytes: after the type, code
	// and checksum, up to where the sink keys).
	// The sender's neighbour entry for the peer is pinned to the peer's
	// MAC: the ARP cases above teach it a forged one when unfiltered.
	pinPeer := func(t *testing.T, ct, dst string) {
		mac := map[string]string{"10.0.3.11": macOf[i2p], "fd00:3::11": macOf[i2p], "fd00:3::10": macOf[haproxy]}[dst]
		sh(t, "ip", "-n", ns[ct], "neigh", "replace", dst, "lladdr", mac, "dev", "eth0", "nud", "permanent")
		t.Cleanup(func() { sh(t, "ip", "-n", ns[ct], "neigh", "del", dst, "dev", "eth0") })
	}
	icmp := func(ct, dst string, typ byte, skip int, sink *udpSink) func(t *testing.T, payload string) bool {
		return func(t *testing.T, payload string) bool {
			pinPeer(t, ct, dst)
			if err := sendICMP(ns[ct], "", dst, typ, append(make([]byte, skip-4), payload...)); err != nil {
				t.Fatal(err)
			}
			return sink.saw(fmt.Sprintf("%d %s", typ, payload))
		}
	}

	// forgeFrom sends from an extra address of container ct to the
	// bridge's address gw (IPv4 or IPv6); the node's MAC is pinned in the
	// container, so the frame dropped is the forged one and not an ARP
	// request or neighbour solicitation from the forged address. An IPv6
	// address is added without duplicate address detection, to be used at
	// once.
	forgeFrom := func(ct, src, gw string) func(t *testing.T, payload string) bool {
		return func(t *testing.T, payload string) bool {
			sink, cidr, dad := node, src+"/24", []string{}
			if strings.Contains(src, ":") {
				sink, cidr, dad = node6, src+"/64", []string{"nodad"}
			}
			sh(t, append([]string{"ip", "-n", ns[ct], "addr", "add", cidr, "dev", "eth0"}, dad...)...)
			defer sh(t, "ip", "-n", ns[ct], "addr", "del", cidr, "dev", "eth0")
			sh(t, "ip", "-n", ns[ct], "neigh", "replace", gw, "lladdr", brMAC, "dev", "eth0", "nud", "permanent")
			defer sh(t, "ip", "-n", ns[ct], "neigh", "del", gw, "dev", "eth0")
			if err := sendUDP(ns[ct], src, net.JoinHostPort(gw, "5600"), payload); err != nil {
				t.Fatal(err)
			}
			return sink.saw(payload)
		}
	}
	// na sends a neighbour advertisement from haproxy (from its pinned
	// ip6, with its own MAC as the target's link-layer address) for
	// target; it got through when the neighbour table of dev in namespace
	// seen (the node's, or a container's) then holds haproxy's MAC for
	// target. That entry is set to was first, so the advertisement has
	// one to overwrite.
	na := func(target, was, seen, dev string) func(t *testing.T, payload string) bool {
		return func(t *testing.T, _ string) bool {
			sh(t, "ip", "-n", seen, "neigh", "replace", target, "lladdr", was, "dev", dev, "nud", "stale")
			defer sh(t, "ip", "-n", seen, "neigh", "del", target, "dev", dev)
			hw, _ := net.ParseMAC(macOf[haproxy])
			if err := sendNA(ns[haproxy], ip6Of[haproxy], target, hw); err != nil {
				t.Fatal(err)
			}
			for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
				got, err := neighMAC(seen, dev, target)
				if err != nil {
					t.Fatal(err)
				}
				if got.String() == macOf[haproxy] {
					return true
				}
			}
			return false
		}
	}
	// dad has haproxy take addr with duplicate address detection, which
	// solicits it from ::; it got through when DAD fails, as another
	// container has addr.
	dad := func(addr string) func(t *testing.T, payload string) bool {
		return func(t *testing.T, _ string) bool {
			sh(t, "ip", "-n", ns[haproxy], "addr", "add", addr+"/64", "dev", "eth0")
			defer sh(t, "ip", "-n", ns[haproxy], "addr", "del", addr+"/64", "dev", "eth0")
			for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
				if strings.Contains(sh(t, "ip", "-n", ns[haproxy], "-6", "addr", "show", "dev", "eth0", "dadfailed"), addr) {
					return true
				}
			}
			return false
		}
	}
	send := func(from, dst string, sink *udpSink) func(t *testing.T, payload string) bool {
		return func(t *testing.T, payload string) bool {
			if err := sendUDP(ns[from], "", dst, payload); err != nil {
				t.Fatal(err)
			}
			return sink.saw(payload)
		}
	}
	// arp sends an ARP request from i2p (its own, pinned Ethernet source)
	// with sender sha/spa to tpa; it got through when the node's
	// neighbour table then holds sha for spa. The node's entry for spa
	// is set to the honest MAC first, so a gratuitous ARP has one to
	// overwrite.
	arp := func(sha, spa, tpa string) func(t *testing.T, payload string) bool {
		return func(t *testing.T, _ string) bool {
			honest := map[string]string{"10.0.3.10": "00:16:3e:00:00:10", "10.0.3.11": "00:16:3e:00:00:11"}[spa]
			sh(t, "ip", "-n", N, "neigh", "replace", spa, "lladdr", honest, "dev", "lxcbr0", "nud", "stale")
			defer sh(t, "ip", "-n", N, "neigh", "del", spa, "dev", "lxcbr0")
			hw, _ := net.ParseMAC(sha)
			if err := sendARP(ns[i2p], 1, hw, spa, tpa); err != nil {
				t.Fatal(err)
			}
			for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
				got, err := neighMAC(N, "lxcbr0", spa)
				if err != nil {
					t.Fatal(err)
				}
				if got.String() == sha {
					return true
				}
			}
			return false
		}
	}
	cases := []struct {
		name     string
		from     string // the container sending
		filtered bool   // dropped while the rules are in
		run      func(t *testing.T, payload string) bool
	}{
		{"honest to the bridge", haproxy, false, func(t *testing.T, payload string) bool {
			if err := sendUDP(ns[haproxy], "", "10.0.3.1:5600", payload); err != nil {
				t.Fatal(err)
			}
			return node.saw(payload)
		}},
		{"honest to the other container", haproxy, false, func(t *testing.T, payload string) bool {
			if err := sendUDP(ns[haproxy], "", "10.0.3.11:5600", payload); err != nil {
				t.Fatal(err)
			}
			return peer.saw(payload)
		}},
		{"honest with a shortened veth name", i2p, false, func(t *testing.T, payload string) bool {
			if err := sendUDP(ns[i2p], "", "10.0.3.1:5600", payload); err != nil {
				t.Fatal(err)
			}
			return node.saw(payload)
		}},
		{"forged IPv4 source", haproxy, true, forgeFrom(haproxy, "10.0.3.99", "10.0.3.1")},
		{"forged IPv4 source of another container", haproxy, true, forgeFrom(haproxy, "10.0.3.11", "10.0.3.1")},
		{"unpinned container forges its source", c2, false, forgeFrom(c2, "10.0.3.98", "10.0.3.1")},
		{"honest IPv6 to the bridge", haproxy, false, send(haproxy, "[fd00:3::1]:5600", node6)},
		{"honest IPv6 to the other container", haproxy, false, send(haproxy, "[fd00:3::11]:5600", peer6)},
		{"honest IPv6 from the link-local address", haproxy, false, send(haproxy, "["+brLL+"%eth0]:5600", node6)},
		{"forged IPv6 source", haproxy, true, forgeFrom(haproxy, "fd00:3::99", "fd00:3::1")},
		{"forged IPv6 source of another container", haproxy, true, forgeFrom(haproxy, "fd00:3::11", "fd00:3::1")},
		{"container without ip6 forges its IPv6 source", i2p, false, forgeFrom(i2p, "fd00:3::98", "fd00:3::1")},
		{"unpinned container forges its IPv6 source", c2, false, forgeFrom(c2, "fd00:3::97", "fd00:3::1")},
		{"duplicate address detection", haproxy, false, dad("fd00:3::12")},
		{"neighbour advertisement for its own ip6", haproxy, false, na("fd00:3::10", fakeMAC, N, "lxcbr0")},
		{"neighbour advertisement for its own link-local address", haproxy, false, na(haproxyLL, fakeMAC, N, "lxcbr0")},
		{"neighbour advertisement for another container's ip6", haproxy, true, na("fd00:3::11", "00:16:3e:00:00:11", N, "lxcbr0")},
		// The node ignores advertisements for its own addresses; the
		// other containers, whose gateway it is, would not.
		{"neighbour advertisement for the bridge's address", haproxy, true, na("fd00:3::1", brMAC, ns[i2p], "eth0")},
		{"changed MAC", i2p, true, func(t *testing.T, payload string) bool {
			sh(t, "ip", "-n", ns[i2p], "link", "set", "eth0", "address", fakeMAC)
			defer sh(t, "ip", "-n", ns[i2p], "link", "set", "eth0", "address", "00:16:3e:00:00:11")
			sh(t, "ip", "-n", ns[i2p], "neigh", "replace", "10.0.3.1", "lladdr", brMAC, "dev", "eth0", "nud", "permanent")
			defer sh(t, "ip", "-n", ns[i2p], "neigh", "del", "10.0.3.1", "dev", "eth0")
			if err := sendUDP(ns[i2p], "", "10.0.3.1:5600", payload); err != nil {
				t.Fatal(err)
			}
			return node.saw(payload)
		}},
		{"ARP request claiming another container's IP", i2p, true, arp("00:16:3e:00:00:11", "10.0.3.10", "10.0.3.1")},
		{"gratuitous ARP claiming another container's IP", i2p, true, arp("00:16:3e:00:00:11", "10.0.3.10", "10.0.3.10")},
		{"ARP with a forged sender MAC", i2p, true, arp(fakeMAC, "10.0.3.11", "10.0.3.1")},
		{"ICMP echo to the other container", haproxy, false, icmp(haproxy, "10.0.3.11", 8, 8, peerICMP)},
		{"ICMP redirect", haproxy, true, icmp(haproxy, "10.0.3.11", 5, 8, peerICMP)},
		{"ICMPv6 echo to the other container", haproxy, false, icmp(haproxy, "fd00:3::11", 128, 16, peerICMP6)},
		{"router advertisement", haproxy, true, icmp(haproxy, "fd00:3::11", 134, 16, peerICMP6)},
		{"ICMPv6 redirect", haproxy, true, icmp(haproxy, "fd00:3::11", 137, 16, peerICMP6)},
		{"router advertisement from a container without ip6", i2p, true, icmp(i2p, "fd00:3::10", 134, 16, haproxyICMP6)},
		{"DHCP server reply", haproxy, true, func(t *testing.T, payload string) bool {
			pinPeer(t, haproxy, "10.0.3.11")
			if err := sendUDP(ns[haproxy], "10.0.3.10:67", "10.0.3.11:68", payload); err != nil {
				t.Fatal(err)
			}
			return peerDHCP.saw(payload)
		}},
		{"DHCPv6 server reply", haproxy, true, func(t *testing.T, payload string) bool {
			pinPeer(t, haproxy, "fd00:3::11")
			if err := sendUDP(ns[haproxy], "[fd00:3::10]:547", "[fd00:3::11]:546", payload); err != nil {
				t.Fatal(err)
			}
			return peerDHCP6.saw(payload)
		}},
	}
	run := func(phase string, rules bool) {
		for i, tc := range cases {
			t.Run(phase+"/"+tc.name, func(t *testing.T) {
				var before map[string]uint64
				if rules {
					before = drops(t, N)
				}
				got := tc.run(t, fmt.Sprintf("%s %d", phase, i))
				if want := !(rules && tc.filtered); got != want {
					t.Errorf("got through: %v, want %v", got, want)
				}
				if !rules {
					return
				}
				after := drops(t, N)
				if _, pinned := after[tc.from]; !pinned {
					return // c2: no chain, no counter
				}
				if up := after[tc.from] > before[tc.from]; up != tc.filtered {
					t.Errorf("drops of %s: %d before, %d after", tc.from, before[tc.from], after[tc.from])
				}
			})
		}
	}

	// Applying again gives the same rules.
	first, err := bridgeRuleset(N)
	if err != nil {
		t.Fatal(err)
	}
	apply()
	if again, err := bridgeRuleset(N); err != nil || again != first {
		t.Fatalf("second Apply changed the bridge table (%v):\n%s\nwas:\n%s", err, again, first)
	}
	if !strings.Contains(first, "chain ct-haproxy") || !strings.Contains(first, "chain ct-"+i2p) || strings.Contains(first, "chain ct-c2") {
		t.Fatalf("bridge table:\n%s", first)
	}
	if _, err := exec.LookPath("nft"); err == nil {
		if got := sh(t, "ip", "netns", "exec", N, "nft", "list", "table", "bridge", Table); got != antispoofRuleset {
			t.Errorf("nft list table bridge %s:\n%s\nwant:\n%s", Table, got, antispoofRuleset)
		}
	}
	run("filtered", true)

	// The console: Report names the unpinned container and counts drops.
	log.l = nil
	var bad int
	testenv.InNetns(N, func() error { bad = Report(env); return nil })
	out := strings.Join(log.l, "\n")
	if !strings.Contains(out, "\nnodeinit: policy: bridge lxcbr0 up 10.0.3.1/24 fd00:3::1/64\n") ||
		!strings.Contains(out, "\nnodeinit: policy: antispoof: c2 has no pinned address: not filtered\n") ||
		!strings.Contains(out, "\nnodeinit: policy: antispoof: i2p-router-for-tests has no pinned ip6: its IPv6 is held to its MAC only\n") ||
		strings.Contains(out, "haproxy has no pinned") ||
		!regexp.MustCompile(`\nnodeinit: policy: nftables table bridge nodeinit: 2 containers pinned, [1-9][0-9]* frames dropped \(haproxy [1-9][0-9]*, i2p-router-for-tests [1-9][0-9]*\)$`).MatchString(out) || bad != 0 {
		t.Errorf("report (%d parts differ):\n%s", bad, out)
	}
	// A pinned MAC that is not the one installed is flagged.
	changed := *p.LXC
	changed.Containers = append([]plan.Container{{Name: haproxy, IP: "10.0.3.10/24", MAC: "00:16:3e:00:00:20"}}, p.LXC.Containers[1:]...)
	var rep []string
	var ok bool
	testenv.InNetns(N, func() error { rep, ok = reportAntispoof(&changed); return nil })
	if last := rep[len(rep)-1]; ok || !strings.HasSuffix(last, "(plan: haproxy differs from the plan)") {
		t.Errorf("report against a changed plan: %q, %v", rep, ok)
	}
	// So is a pinned ip6 that is not the one installed.
	changed.Containers = append([]plan.Container{{Name: haproxy, IP: "10.0.3.10/24", IP6: "fd00:3::20/64", MAC: "00:16:3e:00:00:10"}}, p.LXC.Containers[1:]...)
	testenv.InNetns(N, func() error { rep, ok = reportAntispoof(&changed); return nil })
	if last := rep[len(rep)-1]; ok || !strings.HasSuffix(last, "(plan: haproxy differs from the plan)") {
		t.Errorf("report against a changed ip6: %q, %v", rep, ok)
	}

	// Without containers in the plan the table goes, and every frame
	// above passes.
	env.Node.LXC = &plan.LXC{Bridge: "lxcbr0", Address: "10.0.3.1/24", Address6: "fd00:3::1/64", Network: "veth"}
	apply()
	if got, err := bridgeRuleset(N); err != nil || got != "" {
		t.Fatalf("bridge table left after removing the containers (%v):\n%s", err, got)
	}
	run("unfiltered", false)
}
