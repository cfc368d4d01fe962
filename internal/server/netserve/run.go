package netserve

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"

	"github.com/mkimage/mkimage/internal/server/pxedhcp"
)

// Options configure Run.
type Options struct {
	Dir      string
	Addr     netip.Addr // listen address; unspecified = all (no DHCP then)
	TFTPPort int        // default 69 (U-Boot knows no other)
	HTTPPort int        // default 80
	// DHCP, if set, is served on the interface that holds Addr; its
	// ServerIP is set to Addr.
	DHCP *pxedhcp.Config
	// StatusDir, if set, is where the nodes' status reports are kept
	// (see Status); it is made if missing.
	StatusDir string
	// Inventory, if set, are the only node names whose reports and
	// reboot lease requests are taken (Status.Nodes).
	Inventory []string
	// MaxRebooting is how many reboot leases may be held at once.
	MaxRebooting int
	Log          *log.Logger
}

// Run serves TFTP, HTTP and (optionally) DHCP until ctx ends or one of
// them fails; then it stops the others and returns.
func Run(ctx context.Context, o Options) error {
	if fi, err := os.Stat(o.Dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("serve: %s is not a directory (write one with mkimage netboot -o DIR)", o.Dir)
	}
	if o.TFTPPort == 0 {
		o.TFTPPort = 69
	}
	if o.HTTPPort == 0 {
		o.HTTPPort = 80
	}
	if !o.Addr.IsValid() {
		o.Addr = netip.IPv4Unspecified()
	}
	files := Files{Dir: o.Dir}
	var status *Status
	if o.StatusDir != "" {
		if err := os.MkdirAll(o.StatusDir, 0o755); err != nil {
			return fmt.Errorf("serve: --status-dir: %w", err)
		}
		status = &Status{Dir: o.StatusDir, Log: o.Log, MaxRebooting: o.MaxRebooting}
		if o.Inventory != nil {
			status.Nodes = map[string]bool{}
			for _, n := range o.Inventory {
				status.Nodes[n] = true
			}
		}
	}
	var dhcp *pxedhcp.Server
	ifname := ""
	if o.DHCP != nil {
		if o.Addr.IsUnspecified() {
			return errors.New("serve: DHCP needs --listen ADDR, this server's address on the provisioning network (it is the next-server the nodes fetch from)")
		}
		var err error
		if ifname, err = InterfaceOf(o.Addr); err != nil {
			return err
		}
		c := *o.DHCP
		c.ServerIP = o.Addr
		c.Log = o.Log
		if dhcp, err = pxedhcp.New(c); err != nil {
			return err
		}
	}
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: o.Addr.AsSlice(), Port: o.TFTPPort})
	if err != nil {
		return fmt.Errorf("TFTP on %s: %w", netip.AddrPortFrom(o.Addr, uint16(o.TFTPPort)), err)
	}
	tcp, err := net.Listen("tcp4", net.JoinHostPort(o.Addr.String(), strconv.Itoa(o.HTTPPort)))
	if err != nil {
		udp.Close()
		return fmt.Errorf("HTTP: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	start := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				errs <- err
				cancel()
			}
		}()
	}
	start(func() error { return (&TFTP{Files: files, Log: o.Log}).Serve(ctx, udp) })
	start(func() error { return (&HTTP{Files: files, Status: status, Log: o.Log}).Serve(ctx, tcp) })
	msg := fmt.Sprintf("serving %s: tftp %s, http %s", o.Dir, udp.LocalAddr(), tcp.Addr())
	if status != nil {
		msg += fmt.Sprintf(", status reports to %s, at most %d reboot leases", o.StatusDir, max(o.MaxRebooting, 1))
		if status.Nodes != nil {
			msg += fmt.Sprintf(", from the %d inventory nodes only", len(status.Nodes))
		}
	}
	if dhcp != nil {
		start(func() error { return dhcp.Serve(ifname, ctx.Done()) })
		msg += fmt.Sprintf(", dhcp %s on %s", o.DHCP.Mode, ifname)
	}
	o.Log.Print(msg)
	wg.Wait()
	close(errs)
	err = nil
	for e := range errs {
		err = errors.Join(err, e)
	}
	if err == nil {
		o.Log.Print("stopped")
	}
	return err
}

// InterfaceOf returns the name of the interface that holds addr, and its
// prefix.
func InterfaceOf(addr netip.Addr) (string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	var have []string
	for _, ifc := range ifs {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == addr {
					return ifc.Name, nil
				}
				have = append(have, n.String())
			}
		}
	}
	return "", fmt.Errorf("no interface of this host has address %s (it has %v); --listen takes this server's address on the provisioning network", addr, have)
}

// PrefixOf returns the interface prefix (e.g. 10.0.0.1/24) holding addr.
func PrefixOf(addr netip.Addr) (netip.Prefix, error) {
	ifs, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Prefix{}, err
	}
	for _, a := range ifs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == addr {
				bits, _ := n.Mask.Size()
				return netip.PrefixFrom(addr, bits).Masked(), nil
			}
		}
	}
	return netip.Prefix{}, fmt.Errorf("no interface of this host has address %s", addr)
}
