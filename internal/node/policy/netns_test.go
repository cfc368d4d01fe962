package policy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	"github.com/mkimage/mkimage/internal/cluster"
	"github.com/mkimage/mkimage/internal/cluster/plan"
	"github.com/mkimage/mkimage/internal/testenv"
)

func seedPlan(t *testing.T, name string) plan.Plan {
	t.Helper()
	c, err := cluster.Load("../../../examples/seed-cluster.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range c.Resolve() {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no node %s in the seed example", name)
	return plan.Plan{}
}

func sh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

type lines struct {
	mu sync.Mutex
	l  []string
}

func (l *lines) logf(f string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.l = append(l.l, fmt.Sprintf(f, a...))
}

const routerRuleset = `table ip nodeinit {
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "eth0" ip saddr 192.168.142.0/24 ip daddr 192.168.0.0/24 accept
		iifname "eth0" ip saddr 192.168.142.0/24 ip daddr 172.16.0.0/12 accept
		iifname "eth0" ip daddr 192.168.0.0/16 reject
		iifname "eth0" ip saddr 192.168.142.0/24 ip daddr != 192.168.0.0/16 accept
	}
}
`

// TestRouterForwarding builds the router of the seed example between a
// cluster namespace and a "LAN + internet" namespace, applies its policy
// and sends UDP through it: the home LAN, the VPN networks and the
// internet answer, 192.168.1.0/24 is rejected, and nothing may start a
// connection from outside into the cluster.
func TestRouterForwarding(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "ip")
	router := seedPlan(t, "mcbin")
	C, R, L := testenv.NewNetns(t, "c"), testenv.NewNetns(t, "r"), testenv.NewNetns(t, "l")
	hostFwd, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")

	ip := func(ns string, args ...string) { sh(t, append([]string{"ip", "-n", ns}, args...)...) }
	ip(R, "link", "add", "eth0", "address", router.MAC, "type", "veth", "peer", "name", "c0", "netns", C)
	ip(R, "link", "add", "eth1", "type", "veth", "peer", "name", "l0", "netns", L)
	// What the root's network stack would do after switch_root.
	ip(R, "addr", "add", "192.168.142.254/24", "dev", "eth0")
	ip(R, "addr", "add", "192.168.0.254/24", "dev", "eth1")
	ip(R, "link", "set", "eth0", "up")
	ip(R, "link", "set", "eth1", "up")
	ip(C, "addr", "add", "192.168.142.11/24", "dev", "c0")
	ip(C, "link", "set", "c0", "up")
	ip(C, "route", "add", "default", "via", "192.168.142.254")
	ip(L, "addr", "add", "192.168.0.1/24", "dev", "l0")
	ip(L, "addr", "add", "192.168.0.2/24", "dev", "l0")
	for _, a := range []string{"192.168.1.1/32", "172.16.0.1/32", "203.0.113.1/32"} {
		ip(L, "addr", "add", a, "dev", "lo")
	}
	ip(L, "link", "set", "l0", "up")
	ip(L, "link", "set", "lo", "up")
	ip(L, "route", "add", "192.168.142.0/24", "via", "192.168.0.254")

	log := &lines{}
	env := Env{Root: t.TempDir(), Proc: "/proc", Sys: t.TempDir(), Node: router, Log: log.logf}
	if err := testenv.InNetns(R, func() error { return Apply(context.Background(), env) }); err != nil {
		t.Fatalf("Apply: %v\n%s", err, strings.Join(log.l, "\n"))
	}
	// Twice is the same as once.
	if err := testenv.InNetns(R, func() error { return Apply(context.Background(), env) }); err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	if got, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); string(got) != string(hostFwd) {
		t.Fatalf("host ip_forward changed to %q", got)
	}
	if got := sh(t, "ip", "netns", "exec", R, "cat", "/proc/sys/net/ipv4/ip_forward"); got != "1\n" {
		t.Errorf("router ip_forward %q", got)
	}
	once := []string{"nodeinit: cpufreq: not available, governor skipped", "nodeinit: backup: root has neither systemd nor cron; snapshots not scheduled"}
	wantLog := append(once, once...)
	if strings.Join(log.l, "\n") != strings.Join(wantLog, "\n") {
		t.Errorf("log:\n%s\nwant:\n%s", strings.Join(log.l, "\n"), strings.Join(wantLog, "\n"))
	}

	// Read back with the library ...
	err := testenv.InNetns(R, func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		rules, err := c.GetRules(&nftables.Table{Name: Table, Family: nftables.TableFamilyIPv4}, &nftables.Chain{Name: "forward"})
		if err != nil {
			return err
		}
		if len(rules) != 5 {
			return fmt.Errorf("%d rules in forward, want 5", len(rules))
		}
		routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		var got []string
		for _, r := range routes {
			if r.Gw != nil {
				l, _ := netlink.LinkByIndex(r.LinkIndex)
				got = append(got, fmt.Sprintf("%v via %v dev %s", r.Dst, r.Gw, l.Attrs().Name))
			}
		}
		want := "0.0.0.0/0 via 192.168.0.1 dev eth1,172.16.0.0/12 via 192.168.0.2 dev eth1"
		if strings.Join(got, ",") != want {
			return fmt.Errorf("routes %q, want %q", got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// ... and with nft, when installed.
	if _, err := exec.LookPath("nft"); err == nil {
		if got := sh(t, "ip", "netns", "exec", R, "nft", "list", "ruleset"); got != routerRuleset {
			t.Errorf("nft list ruleset:\n%s\nwant:\n%s", got, routerRuleset)
		}
	}

	// Traffic. Servers in L echo; the client in C expects an echo, a
	// rejection (ICMP port unreachable: ECONNREFUSED) or silence.
	// Traffic. Echo servers in L, one per address so that each answers
	// from the address it was asked on; the client in C expects an echo, a
	// rejection (ICMP port unreachable: ECONNREFUSED) or silence.
	const port = 5555
	for _, a := range []string{"192.168.0.1", "172.16.0.1", "203.0.113.1", "192.168.1.1"} {
		var srv *net.UDPConn
		if err := testenv.InNetns(L, func() (err error) {
			srv, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(a), Port: port})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		go func() {
			buf := make([]byte, 100)
			for {
				n, from, err := srv.ReadFromUDP(buf)
				if err != nil {
					return
				}
				srv.WriteToUDP(buf[:n], from)
			}
		}()
	}
	for _, tc := range []struct{ dst, want string }{
		{"192.168.0.1", "echo"},    // home LAN: the exception
		{"172.16.0.1", "echo"},     // VPN networks, via 192.168.0.2
		{"203.0.113.1", "echo"},    // the internet
		{"192.168.1.1", "refused"}, // rest of 192.168.0.0/16
	} {
		var conn *net.UDPConn
		if err := testenv.InNetns(C, func() (err error) {
			conn, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.ParseIP(tc.dst), Port: port})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		got := udpProbe(conn, tc.dst)
		conn.Close()
		if got != tc.want {
			t.Errorf("192.168.142.11 -> %s: %s, want %s", tc.dst, got, tc.want)
		}
	}
	// A connection started outside must not get in.
	var in, out *net.UDPConn
	testenv.InNetns(C, func() (err error) { in, err = net.ListenUDP("udp4", &net.UDPAddr{Port: port + 1}); return })
	testenv.InNetns(L, func() (err error) {
		out, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.ParseIP("192.168.142.11"), Port: port + 1})
		return
	})
	if in == nil || out == nil {
		t.Fatal("sockets for the inbound probe")
	}
	defer in.Close()
	defer out.Close()
	out.Write([]byte("knock"))
	in.SetReadDeadline(time.Now().Add(time.Second))
	if n, _, err := in.ReadFromUDP(make([]byte, 10)); err == nil {
		t.Errorf("inbound packet from 192.168.0.1 reached the cluster (%d bytes)", n)
	}
}

// udpProbe sends one datagram and reports "echo", "refused" or "silent".
func udpProbe(c *net.UDPConn, msg string) string {
	for try := 0; try < 3; try++ { // the first packets may wait for ARP
		c.Write([]byte(msg))
		c.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
		buf := make([]byte, 100)
		n, err := c.Read(buf)
		switch {
		case err == nil && string(buf[:n]) == msg:
			return "echo"
		case errors.Is(err, syscall.ECONNREFUSED):
			return "refused"
		}
	}
	return "silent"
}

// TestWorkerAndGateway applies a worker's and the gateway's policy each in
// a fresh namespace and reads the result back.
func TestWorkerAndGateway(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "ip")
	t.Run("worker", func(t *testing.T) {
		w := seedPlan(t, "node01")
		ns := testenv.NewNetns(t, "w")
		needBridgeNftables(t, ns) // its container haproxy is pinned
		sh(t, "ip", "-n", ns, "link", "add", "eth0", "address", w.MAC, "type", "veth", "peer", "name", "x0")
		env := Env{Root: t.TempDir(), Proc: "/proc", Sys: t.TempDir(), Node: w, Log: t.Logf}
		for i := 0; i < 2; i++ {
			if err := testenv.InNetns(ns, func() error { return Apply(context.Background(), env) }); err != nil {
				t.Fatal(err)
			}
		}
		err := testenv.InNetns(ns, func() error {
			br, err := netlink.LinkByName("lxcbr0")
			if err != nil {
				return err
			}
			if br.Type() != "bridge" || br.Attrs().OperState == netlink.OperDown && br.Attrs().Flags&net.FlagUp == 0 {
				return fmt.Errorf("lxcbr0: type %s flags %v", br.Type(), br.Attrs().Flags)
			}
			addrs, err := netlink.AddrList(br, netlink.FAMILY_V4)
			if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != "10.0.3.1/24" {
				return fmt.Errorf("lxcbr0 addresses %v (%v), want 10.0.3.1/24", addrs, err)
			}
			routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
			if err != nil {
				return err
			}
			var got []string
			for _, r := range routes {
				if r.Gw != nil {
					l, _ := netlink.LinkByIndex(r.LinkIndex)
					got = append(got, fmt.Sprintf("%v via %v dev %s", r.Dst, r.Gw, l.Attrs().Name))
				}
			}
			if want := "172.16.0.0/12 via 192.168.142.254 dev eth0,192.168.0.0/24 via 192.168.142.254 dev eth0"; strings.Join(got, ",") != want {
				return fmt.Errorf("routes %q, want %q", got, want)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := exec.LookPath("nft"); err == nil {
			want := "table ip nodeinit {\n\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tip saddr 10.0.3.0/24 ip daddr != 10.0.3.0/24 masquerade\n\t}\n}\n" +
				"table bridge nodeinit {\n\tchain prerouting {\n\t\ttype filter hook prerouting priority filter; policy accept;\n\t\tiifname \"vc-haproxy\" jump ct-haproxy\n\t}\n\n" +
				"\tchain ct-haproxy {\n" + routerRuleLines("00:16:3e:00:00:10") + "\t\tether saddr 00:16:3e:00:00:10 ip saddr 10.0.3.10 accept\n" +
				"\t\tether saddr 00:16:3e:00:00:10 arp htype 1 arp ptype ip arp hlen 6 arp plen 4 arp saddr ether 00:16:3e:00:00:10 arp saddr ip 10.0.3.10 accept\n" +
				"\t\tether saddr 00:16:3e:00:00:10 ether type ip6 accept\n\t\tcounter packets 0 bytes 0 drop\n\t}\n}\n"
			if got := sh(t, "ip", "netns", "exec", ns, "nft", "list", "ruleset"); got != want {
				t.Errorf("nft list ruleset:\n%s\nwant:\n%s", got, want)
			}
		}
	})
	t.Run("gateway", func(t *testing.T) {
		g := seedPlan(t, "gw")
		g.Routes = nil // its next hop's interface is not in this namespace
		ns := testenv.NewNetns(t, "g")
		env := Env{Root: t.TempDir(), Proc: "/proc", Sys: t.TempDir(), Node: g, Log: t.Logf}
		if err := testenv.InNetns(ns, func() error { return Apply(context.Background(), env) }); err != nil {
			t.Fatal(err)
		}
		testenv.NeedTools(t, "nft")
		want := "table ip nodeinit {\n\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\toifname \"eth1\" ip saddr 192.168.142.0/24 masquerade\n\t}\n}\n"
		if got := sh(t, "ip", "netns", "exec", ns, "nft", "list", "ruleset"); got != want {
			t.Errorf("nft list ruleset:\n%s\nwant:\n%s", got, want)
		}
		// A plan without rules removes the table again.
		env.Node.NAT = nil
		if err := testenv.InNetns(ns, func() error { return Apply(context.Background(), env) }); err != nil {
			t.Fatal(err)
		}
		if got := sh(t, "ip", "netns", "exec", ns, "nft", "list", "ruleset"); got != "" {
			t.Errorf("ruleset after removing the rules:\n%s", got)
		}
	})
}
