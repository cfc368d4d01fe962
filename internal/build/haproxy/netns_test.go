package haproxy

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/testenv"
)

// TestIngressPackets runs the real haproxy with the generated config in a
// "gateway" namespace, in front of "container" namespaces on a bridge
// (what the LXC bridge is on a node) and an IPv6-only one, and sends it
// requests from a "client" namespace over IPv4.
func TestIngressPackets(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "ip", "haproxy")
	G, W, B, V, C := testenv.NewNetns(t, "hgw"), testenv.NewNetns(t, "hweb"), testenv.NewNetns(t, "hblog"), testenv.NewNetns(t, "hsix"), testenv.NewNetns(t, "hcli")
	ip := func(ns string, args ...string) { testenv.Run(t, "ip", append([]string{"-n", ns}, args...)...) }
	ip(G, "link", "add", "br0", "type", "bridge")
	ip(G, "addr", "add", "10.0.3.1/24", "dev", "br0")
	ip(G, "link", "set", "br0", "up")
	for _, ct := range []struct{ ns, dev, addr string }{{W, "gw0", "10.0.3.10/24"}, {B, "gb0", "10.0.3.11/24"}} {
		ip(G, "link", "add", ct.dev, "type", "veth", "peer", "name", "eth0", "netns", ct.ns)
		ip(G, "link", "set", ct.dev, "master", "br0", "up")
		ip(ct.ns, "addr", "add", ct.addr, "dev", "eth0")
		ip(ct.ns, "link", "set", "eth0", "up")
	}
	ip(G, "link", "add", "gv0", "type", "veth", "peer", "name", "eth0", "netns", V)
	ip(G, "addr", "add", "fd00:3::1/64", "dev", "gv0", "nodad")
	ip(G, "link", "set", "gv0", "up")
	ip(V, "addr", "add", "fd00:3::10/64", "dev", "eth0", "nodad")
	ip(V, "link", "set", "eth0", "up")
	ip(G, "link", "add", "gc0", "type", "veth", "peer", "name", "eth0", "netns", C)
	ip(G, "addr", "add", "192.0.2.1/24", "dev", "gc0")
	ip(G, "link", "set", "gc0", "up")
	ip(C, "addr", "add", "192.0.2.2/24", "dev", "eth0")
	ip(C, "link", "set", "eth0", "up")
	for _, ns := range []string{G, W, B, V, C} {
		ip(ns, "link", "set", "lo", "up")
	}

	// The containers' services, each answering its own name.
	listen := func(ns, network, addr string) net.Listener {
		t.Helper()
		var l net.Listener
		if err := testenv.InNetns(ns, func() (err error) { l, err = net.Listen(network, addr); return err }); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	serveHTTP := func(ns, network, addr, name string) *http.Server {
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s\n", name, r.URL.Path)
		})}
		go srv.Serve(listen(ns, network, addr))
		t.Cleanup(func() { srv.Close() })
		return srv
	}
	serveHTTP(W, "tcp4", "10.0.3.10:8080", "web")
	blog := serveHTTP(B, "tcp4", "10.0.3.11:8080", "blog")
	serveHTTP(V, "tcp6", "[fd00:3::10]:8080", "six")
	tcpL := listen(W, "tcp4", "10.0.3.10:2200")
	go func() {
		for {
			c, err := tcpL.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "shell on c-web\n")
			c.Close()
		}
	}()
	tlsL := tls.NewListener(listen(B, "tcp4", "10.0.3.11:8443"), &tls.Config{Certificates: []tls.Certificate{selfSigned(t, "secure.example.org")}})
	go func() {
		for {
			c, err := tlsL.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if err := c.(*tls.Conn).Handshake(); err == nil {
					io.WriteString(c, "secure on c-blog for "+c.(*tls.Conn).ConnectionState().ServerName+"\n")
				}
			}()
		}
	}()

	// The gateway's haproxy, with the generated config.
	dir := t.TempDir()
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, Generate(testRoutes(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Start(t, "haproxy", exec.Command("ip", "netns", "exec", G, "haproxy", "-db", "-f", cfg))

	// dial connects from the client namespace to the gateway.
	dial := func(port int) (net.Conn, error) {
		var c net.Conn
		err := testenv.InNetns(C, func() (err error) {
			c, err = net.DialTimeout("tcp4", fmt.Sprintf("192.0.2.1:%d", port), 2*time.Second)
			return err
		})
		if c != nil {
			c.SetDeadline(time.Now().Add(3 * time.Second))
		}
		return c, err
	}
	get := func(host string) (int, string, error) {
		c, err := dial(80)
		if err != nil {
			return 0, "", err
		}
		defer c.Close()
		req, _ := http.NewRequest("GET", "http://"+host+"/page", nil)
		req.Close = true
		if err := req.Write(c); err != nil {
			return 0, "", err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), req)
		if err != nil {
			return 0, "", err
		}
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), err
	}
	// until polls get until it answers want, for at most 5 s: haproxy
	// starting, health checks passing or failing.
	until := func(host string, wantCode int, want string) {
		t.Helper()
		var code int
		var body string
		var err error
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			if code, body, err = get(host); err == nil && code == wantCode && body == want {
				return
			}
		}
		t.Fatalf("GET http://%s/page: %d %q, %v; want %d %q", host, code, body, err, wantCode, want)
	}

	until("www.example.org", 200, "web /page\n")
	for _, tc := range []struct {
		host string
		code int
		body string
	}{
		{"www.example.org", 200, "web /page\n"},
		{"EXAMPLE.org:80", 200, "web /page\n"}, // any case, port dropped
		{"blog.example.org", 200, "blog /page\n"},
		{"six.example.org", 200, "six /page\n"}, // IPv4 client, IPv6-only backend
		{"nobody.example.org", 503, UnknownHost + "\n"},
		{"192.0.2.1", 503, UnknownHost + "\n"},
	} {
		if code, body, err := get(tc.host); err != nil || code != tc.code || body != tc.body {
			t.Errorf("GET http://%s/page: %d %q, %v; want %d %q", tc.host, code, body, err, tc.code, tc.body)
		}
	}

	// tcp: its own port, straight to the container.
	if c, err := dial(2222); err != nil {
		t.Errorf("tcp 2222: %v", err)
	} else {
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(got) != "shell on c-web\n" {
			t.Errorf("tcp 2222: %q, %v", got, err)
		}
	}
	// tls: passed through by SNI, so the container's certificate and
	// the client's server name reach each other.
	if c, err := dial(443); err != nil {
		t.Errorf("tls 443: %v", err)
	} else {
		tc := tls.Client(c, &tls.Config{ServerName: "secure.example.org", InsecureSkipVerify: true})
		got, err := io.ReadAll(tc)
		c.Close()
		if err != nil || string(got) != "secure on c-blog for secure.example.org\n" {
			t.Errorf("tls 443: %q, %v", got, err)
		} else if cn := tc.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "secure.example.org" {
			t.Errorf("tls 443: certificate of %q, want the container's", cn)
		}
	}

	// A stopped backend: its health checks fail and the page says so,
	// while the other service behind the same port still answers.
	blog.Close()
	until("blog.example.org", 503, fmt.Sprintf(Down, "blog")+"\n")
	if code, body, err := get("www.example.org"); err != nil || code != 200 || body != "web /page\n" {
		t.Errorf("web after blog stopped: %d %q, %v", code, body, err)
	}
}

// selfSigned makes a certificate for name, as a container's TLS service
// would have.
func selfSigned(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
