package pxedhcp

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"

	"github.com/mkimage/mkimage/internal/testenv"
)

var (
	macA = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x01}
	macB = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x02}
	macX = net.HardwareAddr{0x52, 0x54, 0x00, 0x99, 0x99, 0x99}
)

func config(mode Mode, any bool, lw *lineLog) Config {
	return Config{
		Mode: mode, ServerIP: netip.MustParseAddr("10.77.0.1"),
		Subnet: netip.MustParsePrefix("10.77.0.0/29"), Gateway: netip.MustParseAddr("10.77.0.6"),
		DNS: []netip.Addr{netip.MustParseAddr("10.77.0.6")}, Domain: "seed.lan",
		Hosts: []Host{
			{Name: "node01", MAC: macA, IP: netip.MustParseAddr("10.77.0.2")},
			{Name: "node02", MAC: macB, IP: netip.MustParseAddr("10.77.0.3")},
		},
		Any: any, Log: log.New(lw, "", 0),
	}
}

func packet(t *testing.T, mt dhcpv4.MessageType, mac net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	p, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(mt)}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReplyFull(t *testing.T) {
	s, err := New(config(Full, false, &lineLog{}))
	if err != nil {
		t.Fatal(err)
	}
	req := func(ip string, sid string) []dhcpv4.Modifier {
		m := []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(ip)))}
		if sid != "" {
			m = append(m, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP(sid))))
		}
		return m
	}
	for _, c := range []struct {
		name string
		p    *dhcpv4.DHCPv4
		want dhcpv4.MessageType // MessageTypeNone: no reply
		ip   string
		note string
	}{
		{"discover known", packet(t, dhcpv4.MessageTypeDiscover, macA), dhcpv4.MessageTypeOffer, "10.77.0.2", "OFFER 10.77.0.2"},
		{"discover other known", packet(t, dhcpv4.MessageTypeDiscover, macB), dhcpv4.MessageTypeOffer, "10.77.0.3", "OFFER"},
		{"discover unknown", packet(t, dhcpv4.MessageTypeDiscover, macX), dhcpv4.MessageTypeNone, "", "not in the inventory"},
		{"request ours", packet(t, dhcpv4.MessageTypeRequest, macA, req("10.77.0.2", "10.77.0.1")...), dhcpv4.MessageTypeAck, "10.77.0.2", "ACK 10.77.0.2"},
		{"request wrong address", packet(t, dhcpv4.MessageTypeRequest, macA, req("10.77.0.3", "10.77.0.1")...), dhcpv4.MessageTypeNak, "", "NAK"},
		{"request other server", packet(t, dhcpv4.MessageTypeRequest, macA, req("10.77.0.2", "10.77.0.9")...), dhcpv4.MessageTypeNone, "", "chose server 10.77.0.9"},
		{"renew by ciaddr", packet(t, dhcpv4.MessageTypeRequest, macA, dhcpv4.WithClientIP(net.ParseIP("10.77.0.2"))), dhcpv4.MessageTypeAck, "10.77.0.2", "ACK"},
		{"inform", packet(t, dhcpv4.MessageTypeInform, macA, dhcpv4.WithClientIP(net.ParseIP("10.77.0.2"))), dhcpv4.MessageTypeAck, "0.0.0.0", "inform"},
		{"release", packet(t, dhcpv4.MessageTypeRelease, macA), dhcpv4.MessageTypeNone, "", "RELEASE"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, note := s.Reply(c.p)
			if !strings.Contains(note, c.note) {
				t.Errorf("note %q, want %q", note, c.note)
			}
			if c.want == dhcpv4.MessageTypeNone {
				if r != nil {
					t.Fatalf("replied %s", r.Summary())
				}
				return
			}
			if r == nil {
				t.Fatalf("no reply (%s)", note)
			}
			if r.MessageType() != c.want || r.TransactionID != c.p.TransactionID {
				t.Fatalf("reply %s", r.Summary())
			}
			if c.want == dhcpv4.MessageTypeNak {
				return
			}
			if r.YourIPAddr.String() != c.ip {
				t.Errorf("yiaddr %s, want %s", r.YourIPAddr, c.ip)
			}
			if r.ServerIPAddr.String() != "10.77.0.1" || r.BootFileName != "boot.scr.uimg" || r.BootFileNameOption() != "boot.scr.uimg" {
				t.Errorf("next-server %s, file %q, option 67 %q", r.ServerIPAddr, r.BootFileName, r.BootFileNameOption())
			}
			if r.SubnetMask().String() != "fffffff8" || fmt.Sprint(r.Router()) != "[10.77.0.6]" || fmt.Sprint(r.DNS()) != "[10.77.0.6]" || r.DomainName() != "seed.lan" {
				t.Errorf("mask %s router %v dns %v domain %q", r.SubnetMask(), r.Router(), r.DNS(), r.DomainName())
			}
			if c.ip != "0.0.0.0" && (r.IPAddressLeaseTime(0) != time.Hour || r.HostName() != map[string]string{"10.77.0.2": "node01", "10.77.0.3": "node02"}[c.ip]) {
				t.Errorf("lease %v host %q", r.IPAddressLeaseTime(0), r.HostName())
			}
		})
	}
}

func TestReplyAnyPool(t *testing.T) {
	s, err := New(config(Full, true, &lineLog{}))
	if err != nil {
		t.Fatal(err)
	}
	// /29: .1 server, .2 .3 hosts, .6 gateway, .7 broadcast: .4 and .5 free.
	var got []string
	for i := 0; i < 3; i++ {
		mac := net.HardwareAddr{2, 0, 0, 0, 0, byte(i)}
		r, note := s.Reply(packet(t, dhcpv4.MessageTypeDiscover, mac))
		if r == nil {
			got = append(got, note)
			continue
		}
		got = append(got, r.YourIPAddr.String())
	}
	if got[0] != "10.77.0.4" || got[1] != "10.77.0.5" || !strings.Contains(got[2], "no free address") {
		t.Fatalf("pool handed out %q", got)
	}
	// The same MAC gets the same address again.
	r, _ := s.Reply(packet(t, dhcpv4.MessageTypeDiscover, net.HardwareAddr{2, 0, 0, 0, 0, 1}))
	if r == nil || r.YourIPAddr.String() != "10.77.0.5" {
		t.Fatalf("second discover: %v", r)
	}
	// A release returns the address.
	s.Reply(packet(t, dhcpv4.MessageTypeRelease, net.HardwareAddr{2, 0, 0, 0, 0, 0}))
	r, _ = s.Reply(packet(t, dhcpv4.MessageTypeDiscover, net.HardwareAddr{2, 0, 0, 0, 0, 2}))
	if r == nil || r.YourIPAddr.String() != "10.77.0.4" {
		t.Fatalf("after release: %v", r)
	}
}

func TestReplyProxy(t *testing.T) {
	s, err := New(config(Proxy, false, &lineLog{}))
	if err != nil {
		t.Fatal(err)
	}
	r, note := s.Reply(packet(t, dhcpv4.MessageTypeDiscover, macA))
	if r == nil || r.MessageType() != dhcpv4.MessageTypeOffer || !r.YourIPAddr.IsUnspecified() ||
		r.ServerIPAddr.String() != "10.77.0.1" || r.ClassIdentifier() != "PXEClient" || r.BootFileName != "boot.scr.uimg" {
		t.Fatalf("proxy offer %v (%s)", r, note)
	}
	if r.SubnetMask() != nil || len(r.Router()) != 0 {
		t.Errorf("proxy offer carries address settings: %s", r.Summary())
	}
	// A REQUEST for the site's DHCP server is not ours.
	if r, _ := s.Reply(packet(t, dhcpv4.MessageTypeRequest, macA, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.77.0.200"))))); r != nil {
		t.Errorf("answered a request for another server: %s", r.Summary())
	}
	// Unknown non-PXE clients are ignored even with --any.
	s2, _ := New(config(Proxy, true, &lineLog{}))
	if r, _ := s2.Reply(packet(t, dhcpv4.MessageTypeDiscover, macX)); r != nil {
		t.Errorf("answered a non-PXE client")
	}
	if r, _ := s2.Reply(packet(t, dhcpv4.MessageTypeDiscover, macX, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00011")))); r == nil {
		t.Errorf("ignored a PXE client with --any")
	}
}

func TestNewErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"mode", func(c *Config) { c.Mode = "relay" }, `DHCP mode "relay"`},
		{"no ip", func(c *Config) { c.Hosts[0].IP = netip.Addr{} }, "host node01 (52:54:00:12:34:01) has no IPv4 address"},
		{"outside", func(c *Config) { c.Hosts[0].IP = netip.MustParseAddr("10.78.0.2") }, "outside the subnet"},
		{"server outside", func(c *Config) { c.ServerIP = netip.MustParseAddr("10.78.0.1") }, "this server's address 10.78.0.1 is outside"},
		{"clash", func(c *Config) { c.Hosts[1].IP = c.Hosts[0].IP }, "already host node01"},
		{"server clash", func(c *Config) { c.Hosts[1].IP = c.ServerIP }, "already this server"},
		{"dup mac", func(c *Config) { c.Hosts[1].MAC = macA }, "listed twice"},
		{"no subnet", func(c *Config) { c.Subnet = netip.Prefix{}; c.Hosts = nil }, "needs the subnet"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := config(Full, false, &lineLog{})
			c.mod(&cfg)
			if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

type lineLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, strings.TrimSpace(string(p)))
	return len(p), nil
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestLeaseOverVeth runs the server and insomniacslk's nclient4 in two
// network namespaces joined by a veth pair: real DHCP packets, broadcast
// and raw sockets, nothing leaving the machine.
func TestLeaseOverVeth(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "ip")
	srvNS, cliNS := testenv.NewNetns(t, "pxd-s"), testenv.NewNetns(t, "pxd-c")
	ip(t, "-n", srvNS, "link", "add", "vs", "type", "veth", "peer", "name", "vc", "netns", cliNS)
	ip(t, "-n", srvNS, "addr", "add", "10.77.0.1/29", "dev", "vs")
	ip(t, "-n", srvNS, "link", "set", "vs", "up")
	ip(t, "-n", cliNS, "link", "set", "vc", "up")

	lw := &lineLog{}
	s, err := New(config(Full, false, lw))
	if err != nil {
		t.Fatal(err)
	}
	var conn net.PacketConn
	err = testenv.InNetns(srvNS, func() (err error) {
		conn, err = server4.NewIPv4UDPConn("vs", &net.UDPAddr{Port: dhcpv4.ServerPort})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- s.ServeConn(conn, stop) }()
	defer func() {
		close(stop)
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(5 * time.Second):
			t.Error("DHCP server did not stop")
		}
	}()

	client := func(mac net.HardwareAddr) (*nclient4.Client, error) {
		var c *nclient4.Client
		err := testenv.InNetns(cliNS, func() (err error) {
			c, err = nclient4.New("vc", nclient4.WithHWAddr(mac), nclient4.WithTimeout(time.Second), nclient4.WithRetry(2))
			return err
		})
		return c, err
	}
	c, err := client(macA)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lease, err := c.Request(ctx)
	if err != nil {
		t.Fatalf("lease: %v\nserver log:\n%s", err, lw)
	}
	a := lease.ACK
	if a.YourIPAddr.String() != "10.77.0.2" || a.ServerIPAddr.String() != "10.77.0.1" || a.BootFileName != "boot.scr.uimg" || a.HostName() != "node01" {
		t.Errorf("ACK %s", a.Summary())
	}

	// An unknown MAC gets nothing, and the server says so.
	cx, err := client(macX)
	if err != nil {
		t.Fatal(err)
	}
	defer cx.Close()
	if _, err := cx.Request(ctx); err == nil {
		t.Error("unknown MAC got a lease")
	}
	log := lw.String()
	for _, want := range []string{"DISCOVER from 52:54:00:12:34:01 (node01): OFFER 10.77.0.2", "REQUEST from 52:54:00:12:34:01 (node01): ACK 10.77.0.2", "DISCOVER from 52:54:00:99:99:99: ignored: MAC not in the inventory"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}
