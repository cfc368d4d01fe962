// Package netup brings a netbooting node's network up from the
// initramfs: link up, a DHCP lease (insomniacslk's nclient4), the leased
// address and default route set by netlink. The lease's next-server is
// where the node was booted from, which is where netroot and netinstall
// fetch their images when the command line's URL names no host.
package netup

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
)

// Lease is a configured interface.
type Lease struct {
	Iface  string
	Addr   netip.Prefix
	Router netip.Addr // invalid: none
	// Server is the boot server: the lease's next-server (siaddr), or the
	// DHCP server's identifier when next-server is empty.
	Server   netip.Addr
	DNS      []netip.Addr
	Hostname string
}

// Up tries DHCP on each interface (all Ethernet interfaces, by name, when
// ifaces is empty) until one gets a lease or ctx ends, then configures it.
func Up(ctx context.Context, ifaces []string, logf func(string, ...any)) (*Lease, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if len(ifaces) == 0 {
		links, err := netlink.LinkList()
		if err != nil {
			return nil, err
		}
		for _, l := range links {
			a := l.Attrs()
			if a.Flags&net.FlagLoopback == 0 && len(a.HardwareAddr) == 6 && (l.Type() == "device" || l.Type() == "veth") {
				ifaces = append(ifaces, a.Name)
			}
		}
		sort.Strings(ifaces)
	}
	if len(ifaces) == 0 {
		return nil, errors.New("no Ethernet interface (is the NIC's driver module loaded?)")
	}
	var lastErr error
	for round := 0; ctx.Err() == nil; round++ {
		for _, name := range ifaces {
			l, err := try(ctx, name)
			if err == nil {
				logf("%s: %s, router %v, boot server %s", l.Iface, l.Addr, l.Router, l.Server)
				return l, nil
			}
			lastErr = err
			if round == 0 {
				logf("%s: %v", name, err)
			}
		}
	}
	return nil, fmt.Errorf("no DHCP lease on %v: %v", ifaces, lastErr)
}

func try(ctx context.Context, name string) (*Lease, error) {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return nil, err
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("link up: %w", err)
	}
	c, err := nclient4.New(name, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(2))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	lease, err := c.Request(rctx)
	if err != nil {
		return nil, fmt.Errorf("DHCP: %w", err)
	}
	return configure(link, lease.ACK)
}

func addr(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok || a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}

func configure(link netlink.Link, ack *dhcpv4.DHCPv4) (*Lease, error) {
	ip := addr(ack.YourIPAddr)
	if !ip.IsValid() {
		return nil, fmt.Errorf("DHCP ACK without an address: %s", ack.Summary())
	}
	mask := ack.SubnetMask()
	bits := 24
	if mask != nil {
		bits, _ = mask.Size()
	}
	l := &Lease{Iface: link.Attrs().Name, Addr: netip.PrefixFrom(ip, bits), Hostname: ack.HostName()}
	if rs := ack.Router(); len(rs) > 0 {
		l.Router = addr(rs[0])
	}
	for _, d := range ack.DNS() {
		if a := addr(d); a.IsValid() {
			l.DNS = append(l.DNS, a)
		}
	}
	l.Server = addr(ack.ServerIPAddr)
	if !l.Server.IsValid() {
		l.Server = addr(ack.ServerIdentifier())
	}
	nlAddr := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(bits, 32)}}
	if err := netlink.AddrReplace(link, nlAddr); err != nil {
		return nil, fmt.Errorf("address %s: %w", l.Addr, err)
	}
	if l.Router.IsValid() && l.Addr.Masked().Contains(l.Router) {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: l.Router.AsSlice()}
		if err := netlink.RouteReplace(r); err != nil {
			return nil, fmt.Errorf("default route via %s: %w", l.Router, err)
		}
	}
	return l, nil
}
