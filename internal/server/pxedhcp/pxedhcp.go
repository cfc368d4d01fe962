// Package pxedhcp answers DHCP for netbooting nodes: it tells the nodes
// of an inventory where their boot file is (next-server = this server,
// boot file boot.scr.uimg) and, in full mode, which address they have.
//
//   - Full: the only DHCP server of an isolated provisioning network. Each
//     inventory node gets its inventory address with the subnet mask,
//     gateway, DNS servers and domain of the cluster config.
//   - Proxy: beside an existing DHCP server (PXE proxyDHCP, as in the PXE
//     spec): offers carry no address, only the boot server and file, and
//     the vendor class "PXEClient". Debian's U-Boot builds do not use a
//     proxy offer's server; proxy mode is for firmware that does.
//
// MACs outside the inventory are logged and ignored unless Any is set;
// then full mode leases them free addresses of the subnet.
package pxedhcp

import (
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
)

// Mode is how the server answers.
type Mode string

const (
	Full  Mode = "full"
	Proxy Mode = "proxy"
)

// Host is one inventory node.
type Host struct {
	Name string
	MAC  net.HardwareAddr
	IP   netip.Addr // needed in full mode
}

// Config is what the server hands out.
type Config struct {
	Mode     Mode
	ServerIP netip.Addr // our address: next-server and server identifier
	// Subnet, Gateway, DNS and Domain are what full mode hands out.
	Subnet   netip.Prefix
	Gateway  netip.Addr
	DNS      []netip.Addr
	Domain   string
	BootFile string        // default boot.scr.uimg
	Lease    time.Duration // default 1 h
	Hosts    []Host
	Any      bool // answer MACs outside the inventory too
	Log      *log.Logger
}

// Server answers DHCP requests.
type Server struct {
	c     Config
	hosts map[string]Host // by MAC string

	mu     sync.Mutex
	pool   []netip.Addr          // free addresses for unknown MACs (full + Any)
	leased map[string]netip.Addr // unknown MAC -> pool address
}

// New checks c and returns a server.
func New(c Config) (*Server, error) {
	if c.Mode != Full && c.Mode != Proxy {
		return nil, fmt.Errorf("DHCP mode %q: want full or proxy", c.Mode)
	}
	if !c.ServerIP.Is4() {
		return nil, fmt.Errorf("DHCP server address %v: want an IPv4 address", c.ServerIP)
	}
	if c.BootFile == "" {
		c.BootFile = "boot.scr.uimg"
	}
	if c.Lease == 0 {
		c.Lease = time.Hour
	}
	if c.Log == nil {
		c.Log = log.New(devNull{}, "", 0)
	}
	s := &Server{c: c, hosts: map[string]Host{}, leased: map[string]netip.Addr{}}
	used := map[netip.Addr]string{c.ServerIP: "this server"}
	if c.Gateway.IsValid() {
		used[c.Gateway] = "the gateway"
	}
	for _, h := range c.Hosts {
		if len(h.MAC) != 6 {
			return nil, fmt.Errorf("host %s: MAC %q is not an Ethernet address", h.Name, h.MAC)
		}
		if _, dup := s.hosts[h.MAC.String()]; dup {
			return nil, fmt.Errorf("host %s: MAC %s listed twice", h.Name, h.MAC)
		}
		if c.Mode == Full {
			if !h.IP.Is4() {
				return nil, fmt.Errorf("host %s (%s) has no IPv4 address; full DHCP hands out inventory addresses, so give the node an ip", h.Name, h.MAC)
			}
			if !c.Subnet.Contains(h.IP) {
				return nil, fmt.Errorf("host %s address %s is outside the subnet %s", h.Name, h.IP, c.Subnet)
			}
			if other, ok := used[h.IP]; ok && h.IP != c.Gateway {
				return nil, fmt.Errorf("host %s address %s is already %s", h.Name, h.IP, other)
			}
			used[h.IP] = "host " + h.Name
		}
		s.hosts[h.MAC.String()] = h
	}
	if c.Mode == Full {
		if !c.Subnet.IsValid() || !c.Subnet.Addr().Is4() {
			return nil, errors.New("full DHCP needs the subnet (from the cluster config's [network] subnet)")
		}
		if !c.Subnet.Contains(c.ServerIP) {
			return nil, fmt.Errorf("this server's address %s is outside the subnet %s it hands out; listen on an address of the provisioning network", c.ServerIP, c.Subnet)
		}
		if c.Any {
			s.pool = freeAddrs(c.Subnet.Masked(), used)
		}
	}
	return s, nil
}

type devNull struct{}

func (devNull) Write(p []byte) (int, error) { return len(p), nil }

// freeAddrs lists the subnet's host addresses not in used (at most 4096).
func freeAddrs(p netip.Prefix, used map[netip.Addr]string) []netip.Addr {
	var out []netip.Addr
	last := p.Addr()
	for a := p.Addr().Next(); p.Contains(a) && len(out) < 4096; a = a.Next() {
		last = a
		if _, ok := used[a]; !ok {
			out = append(out, a)
		}
	}
	// Drop the broadcast address.
	if n := len(out); n > 0 && out[n-1] == last && p.Bits() < 31 {
		out = out[:n-1]
	}
	return out
}

// Reply computes the answer to req, or nil to stay silent. note says
// what happened, for the log line.
func (s *Server) Reply(req *dhcpv4.DHCPv4) (reply *dhcpv4.DHCPv4, note string) {
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return nil, "not a request"
	}
	mac := req.ClientHWAddr.String()
	h, known := s.hosts[mac]
	if !known && !s.c.Any {
		return nil, "ignored: MAC not in the inventory (serve --any answers every MAC)"
	}
	if s.c.Mode == Proxy {
		return s.proxy(req, h, known)
	}
	return s.full(req, h, known)
}

func (s *Server) full(req *dhcpv4.DHCPv4, h Host, known bool) (*dhcpv4.DHCPv4, string) {
	mac := req.ClientHWAddr.String()
	ip := h.IP
	if !known {
		var ok bool
		if ip, ok = s.poolAddr(mac); !ok {
			return nil, "ignored: no free address left for an unknown MAC"
		}
	}
	switch mt := req.MessageType(); mt {
	case dhcpv4.MessageTypeDiscover:
		return s.lease(req, dhcpv4.MessageTypeOffer, ip, h.Name), "OFFER " + ip.String()
	case dhcpv4.MessageTypeRequest:
		if sid := req.ServerIdentifier(); sid != nil && !sid.Equal(s.c.ServerIP.AsSlice()) {
			s.release(mac)
			return nil, fmt.Sprintf("ignored: client chose server %s", sid)
		}
		want := req.RequestedIPAddress()
		if want == nil || want.IsUnspecified() {
			want = req.ClientIPAddr
		}
		if !want.Equal(ip.AsSlice()) {
			r, err := dhcpv4.NewReplyFromRequest(req,
				dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.c.ServerIP.AsSlice())),
				dhcpv4.WithOption(dhcpv4.OptMessage("address not assigned to this MAC")))
			if err != nil {
				return nil, err.Error()
			}
			return r, fmt.Sprintf("NAK (asked for %s, assigned %s)", want, ip)
		}
		return s.lease(req, dhcpv4.MessageTypeAck, ip, h.Name), "ACK " + ip.String()
	case dhcpv4.MessageTypeInform:
		r := s.lease(req, dhcpv4.MessageTypeAck, netip.IPv4Unspecified(), h.Name)
		r.Options.Del(dhcpv4.OptionIPAddressLeaseTime) // RFC 2131: no lease for INFORM
		return r, "ACK (inform)"
	case dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline:
		if !known {
			s.release(mac)
		}
		return nil, "noted " + strings.ToUpper(mt.String())
	default:
		return nil, "ignored message type " + mt.String()
	}
}

// lease builds an OFFER or ACK for ip (unspecified for INFORM).
func (s *Server) lease(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, ip netip.Addr, name string) *dhcpv4.DHCPv4 {
	c := s.c
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithYourIP(ip.AsSlice()),
		dhcpv4.WithServerIP(c.ServerIP.AsSlice()),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(c.ServerIP.AsSlice())),
		dhcpv4.WithNetmask(net.CIDRMask(c.Subnet.Bits(), 32)),
		dhcpv4.WithLeaseTime(uint32(c.Lease / time.Second)),
		dhcpv4.WithOption(dhcpv4.OptTFTPServerName(c.ServerIP.String())),
		dhcpv4.WithOption(dhcpv4.OptBootFileName(c.BootFile)),
	}
	if c.Gateway.IsValid() {
		mods = append(mods, dhcpv4.WithRouter(c.Gateway.AsSlice()))
	}
	if len(c.DNS) > 0 {
		var dns []net.IP
		for _, d := range c.DNS {
			dns = append(dns, d.AsSlice())
		}
		mods = append(mods, dhcpv4.WithDNS(dns...))
	}
	if c.Domain != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDomainName(c.Domain)))
	}
	if name != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(name)))
	}
	r, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		return nil
	}
	r.BootFileName = c.BootFile
	return r
}

func (s *Server) proxy(req *dhcpv4.DHCPv4, h Host, known bool) (*dhcpv4.DHCPv4, string) {
	mt := req.MessageType()
	if mt != dhcpv4.MessageTypeDiscover && mt != dhcpv4.MessageTypeRequest {
		return nil, "ignored message type " + mt.String() + " (proxy)"
	}
	if !known && !strings.HasPrefix(req.ClassIdentifier(), "PXEClient") {
		return nil, "ignored: not a PXE client"
	}
	if mt == dhcpv4.MessageTypeRequest {
		// A REQUEST to port 67 names the DHCP server it accepted; answer
		// only requests meant for us (the boot server request).
		if sid := req.ServerIdentifier(); sid == nil || !sid.Equal(s.c.ServerIP.AsSlice()) {
			return nil, "ignored: REQUEST for another server (proxy)"
		}
	}
	reply := dhcpv4.MessageTypeOffer
	if mt == dhcpv4.MessageTypeRequest {
		reply = dhcpv4.MessageTypeAck
	}
	r, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(reply),
		dhcpv4.WithYourIP(net.IPv4zero),
		dhcpv4.WithServerIP(s.c.ServerIP.AsSlice()),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.c.ServerIP.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient")),
		dhcpv4.WithOption(dhcpv4.OptTFTPServerName(s.c.ServerIP.String())),
		dhcpv4.WithOption(dhcpv4.OptBootFileName(s.c.BootFile)),
	)
	if err != nil {
		return nil, err.Error()
	}
	r.BootFileName = s.c.BootFile
	return r, "proxy " + strings.ToUpper(reply.String()) + " (boot server only)"
}

func (s *Server) poolAddr(mac string) (netip.Addr, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.leased[mac]; ok {
		return a, true
	}
	if len(s.pool) == 0 {
		return netip.Addr{}, false
	}
	a := s.pool[0]
	s.pool = s.pool[1:]
	s.leased[mac] = a
	return a, true
}

func (s *Server) release(mac string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.leased[mac]; ok {
		delete(s.leased, mac)
		s.pool = append(s.pool, a)
		sort.Slice(s.pool, func(i, j int) bool { return s.pool[i].Less(s.pool[j]) })
	}
}

// handle answers one packet and logs one line.
func (s *Server) handle(conn net.PacketConn, peer net.Addr, req *dhcpv4.DHCPv4) {
	reply, note := s.Reply(req)
	who := req.ClientHWAddr.String()
	if h, ok := s.hosts[who]; ok && h.Name != "" {
		who += " (" + h.Name + ")"
	}
	mt := strings.ToUpper(req.MessageType().String())
	if reply == nil {
		s.c.Log.Printf("dhcp: %s from %s: %s", mt, who, note)
		return
	}
	to := peer
	if up, ok := peer.(*net.UDPAddr); ok {
		switch {
		case !req.GatewayIPAddr.IsUnspecified() && req.GatewayIPAddr != nil:
			to = &net.UDPAddr{IP: req.GatewayIPAddr, Port: dhcpv4.ServerPort}
		case req.ClientIPAddr != nil && !req.ClientIPAddr.IsUnspecified() && reply.MessageType() != dhcpv4.MessageTypeNak:
			to = &net.UDPAddr{IP: req.ClientIPAddr, Port: up.Port}
		default:
			to = &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
		}
	}
	if _, err := conn.WriteTo(reply.ToBytes(), to); err != nil {
		s.c.Log.Printf("dhcp: %s from %s: %s: sending to %s: %v", mt, who, note, to, err)
		return
	}
	s.c.Log.Printf("dhcp: %s from %s: %s", mt, who, note)
}

// Serve answers DHCP on interface ifname (port 67 on all addresses, so
// broadcasts arrive) until stop is closed.
func (s *Server) Serve(ifname string, stop <-chan struct{}) error {
	conn, err := server4.NewIPv4UDPConn(ifname, &net.UDPAddr{IP: net.IPv4zero, Port: dhcpv4.ServerPort})
	if err != nil {
		return fmt.Errorf("DHCP on %s port 67: %w (needs root or CAP_NET_BIND_SERVICE, and no other DHCP server on this host)", ifname, err)
	}
	return s.ServeConn(conn, stop)
}

// ServeConn answers DHCP on conn until stop is closed, then closes it.
func (s *Server) ServeConn(conn net.PacketConn, stop <-chan struct{}) error {
	srv, err := server4.NewServer("", nil, s.handle, server4.WithConn(conn), server4.WithLogger(&dropLog{l: s.c.Log}))
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	select {
	case err := <-done:
		return fmt.Errorf("DHCP on %s: %w", conn.LocalAddr(), err)
	case <-stop:
		srv.Close()
		<-done
		return nil
	}
}

// dropLog passes on the one thing the DHCP library says that matters
// here: a packet it could not parse (an option overrunning the packet,
// a short header) was dropped, so a broken or hostile client shows in the
// log instead of being ignored silently. The library's read loop calls
// it from one goroutine, "Handling request from PEER" before each parse.
type dropLog struct {
	l    *log.Logger
	peer string
}

func (*dropLog) PrintMessage(string, *dhcpv4.DHCPv4) {}

func (d *dropLog) Printf(format string, v ...any) {
	switch {
	case strings.HasPrefix(format, "Handling request from") && len(v) == 1:
		d.peer = fmt.Sprint(v[0])
	case strings.HasPrefix(format, "Error parsing") && len(v) == 1:
		d.l.Printf("dhcp: dropped a malformed packet from %s: %v", d.peer, v[0])
	}
}
