package netup

import (
	"context"
	"io"
	"log"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/server4"

	"github.com/mkimage/mkimage/internal/server/pxedhcp"
	"github.com/mkimage/mkimage/internal/testenv"
)

func ip(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestUp leases an address from the project's DHCP server across a veth
// pair between two namespaces and checks the address and route netup set.
func TestUp(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "ip")
	srvNS, nodeNS := testenv.NewNetns(t, "netup-s"), testenv.NewNetns(t, "netup-n")
	ip(t, "-n", srvNS, "link", "add", "vs", "type", "veth", "peer", "name", "eth0", "netns", nodeNS)
	ip(t, "-n", srvNS, "addr", "add", "10.79.0.1/24", "dev", "vs")
	ip(t, "-n", srvNS, "link", "set", "vs", "up")

	mac, _ := net.ParseMAC(strings.Fields(ip(t, "-n", nodeNS, "-br", "link", "show", "eth0"))[2])
	s, err := pxedhcp.New(pxedhcp.Config{
		Mode: pxedhcp.Full, ServerIP: netip.MustParseAddr("10.79.0.1"), Subnet: netip.MustParsePrefix("10.79.0.0/24"),
		Gateway: netip.MustParseAddr("10.79.0.254"), Hosts: []pxedhcp.Host{{Name: "node01", MAC: mac, IP: netip.MustParseAddr("10.79.0.11")}},
		Log: log.New(io.Discard, "", 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	var conn net.PacketConn
	err = testenv.InNetns(srvNS, func() (err error) {
		conn, err = server4.NewIPv4UDPConn("vs", &net.UDPAddr{Port: 67})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- s.ServeConn(conn, stop) }()
	defer func() { close(stop); <-done }()

	var l *Lease
	err = testenv.InNetns(nodeNS, func() (err error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		l, err = Up(ctx, nil, t.Logf)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if l.Iface != "eth0" || l.Addr.String() != "10.79.0.11/24" || l.Server.String() != "10.79.0.1" || l.Router.String() != "10.79.0.254" || l.Hostname != "node01" {
		t.Errorf("lease %+v", l)
	}
	if a := ip(t, "-n", nodeNS, "-4", "addr", "show", "eth0"); !strings.Contains(a, "10.79.0.11/24") {
		t.Errorf("address not set:\n%s", a)
	}
	if r := ip(t, "-n", nodeNS, "route"); !strings.Contains(r, "default via 10.79.0.254 dev eth0") {
		t.Errorf("route not set:\n%s", r)
	}
}

// TestWaitForNIC: lo alone is not enough; a NIC registered late is
// waited for, up to the limit.
func TestWaitForNIC(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "lo"), 0o755)
	start := time.Now()
	if WaitForNIC(dir, 300*time.Millisecond) {
		t.Error("lo alone counted as a NIC")
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("returned after %v with only lo, want the full 300ms", d)
	}
	time.AfterFunc(200*time.Millisecond, func() { os.Mkdir(filepath.Join(dir, "eth0"), 0o755) })
	start = time.Now()
	if !WaitForNIC(dir, 5*time.Second) {
		t.Error("eth0 not seen")
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 2*time.Second {
		t.Errorf("returned after %v, want soon after eth0 appeared at 200ms", d)
	}
}
