package policy

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Routes installs the plan's static routes with netlink (RouteReplace, so
// twice is the same as once). A route without dev goes out of the cluster
// interface (the link with the node's MAC). Routes are marked onlink: in
// the initramfs the interfaces have no addresses yet (the root's network
// stack assigns them after switch_root), so the kernel could not check
// the next hop; the links are brought up, as onlink requires.
func Routes(env Env) error {
	p := env.Node
	if len(p.Routes) == 0 {
		return nil
	}
	// Without any local address (lo down, as in a fresh initramfs) the
	// kernel has no local table and rejects every gateway, onlink or not.
	if lo, err := netlink.LinkByName("lo"); err == nil {
		if err := netlink.LinkSetUp(lo); err != nil {
			return fmt.Errorf("lo: %w", err)
		}
	}
	var errs []error
	for _, r := range p.Routes {
		if err := route(p.MAC, r.Destination, r.Via, r.Dev); err != nil {
			errs = append(errs, fmt.Errorf("route %s via %s dev %s: %w", r.Destination, r.Via, r.Dev, err))
		}
	}
	return errors.Join(errs...)
}

func route(mac, dst, via, dev string) error {
	rt, err := routeOf(mac, dst, via, dev)
	if err != nil {
		return err
	}
	return netlink.RouteReplace(rt)
}

// unroute deletes the route route installs, if it is there (deleted
// says).
func unroute(mac, dst, via, dev string) (deleted bool, err error) {
	rt, err := routeOf(mac, dst, via, dev)
	if err != nil {
		return false, err
	}
	if err := netlink.RouteDel(rt); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// routeOf is the netlink route for a plan's route, its link up.
func routeOf(mac, dst, via, dev string) (*netlink.Route, error) {
	var link netlink.Link
	var err error
	if dev != "" {
		link, err = netlink.LinkByName(dev)
	} else {
		link, err = linkByMAC(mac)
	}
	if err != nil {
		return nil, err
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, err
	}
	rt := &netlink.Route{LinkIndex: link.Attrs().Index, Scope: netlink.SCOPE_UNIVERSE}
	if dst != "default" {
		_, n, err := net.ParseCIDR(dst)
		if err != nil {
			return nil, err
		}
		rt.Dst = n
	} else {
		_, rt.Dst, _ = net.ParseCIDR("0.0.0.0/0")
	}
	if via != "" {
		rt.Gw = net.ParseIP(via)
		rt.Flags = int(netlink.FLAG_ONLINK)
	} else {
		rt.Scope = netlink.SCOPE_LINK
	}
	return rt, nil
}

func linkByMAC(mac string) (netlink.Link, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	for _, l := range links {
		if strings.EqualFold(l.Attrs().HardwareAddr.String(), mac) && l.Type() != "bridge" {
			return l, nil
		}
	}
	return nil, fmt.Errorf("no interface with MAC %s", mac)
}
