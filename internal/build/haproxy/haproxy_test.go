package haproxy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/cluster"
	"github.com/mkimage/mkimage/internal/testenv"
)

// testConfig is the seed's layout in small: a gateway, and two
// containers on two workers, each running a web service; c-blog also
// takes TLS by SNI and c-web SSH-like TCP on a public port.
const testConfig = `[cluster]
name = "t"
[network]
subnet = "192.168.142.0/24"
[[node]]
name = "gw"
mac = "00:1e:06:00:00:01"
ip = "192.168.142.1"
role = "gateway"
[[node]]
name = "node01"
mac = "00:1e:06:00:00:02"
ip = "192.168.142.11"
role = "worker"
[[node]]
name = "node02"
mac = "00:1e:06:00:00:03"
ip = "192.168.142.12"
role = "worker"
[lxc]
bridge = "lxcbr0"
address = "10.0.3.1/24"
[[lxc.container]]
name = "c-web"
node = "node01"
ip = "10.0.3.10"
[[lxc.container]]
name = "c-blog"
node = "node02"
ip = "10.0.3.11"
[[service]]
name = "web"
container = "c-web"
port = 8080
protocol = "http"
hosts = ["www.example.org", "example.org"]
check_path = "/healthz"
check_interval = "100ms"
[[service]]
name = "blog"
container = "c-blog"
port = 8080
protocol = "http"
hosts = ["blog.example.org"]
check_interval = "100ms"
[[service]]
name = "secure"
container = "c-blog"
port = 8443
protocol = "tls"
hosts = ["secure.example.org"]
check_interval = "100ms"
[[service]]
name = "shell"
container = "c-web"
port = 2200
protocol = "tcp"
public_port = 2222
check_interval = "100ms"
# An IPv6-only server behind the IPv4 frontends (the seed's "reverse
# proxy IPv4 to IPv6").
[[service]]
name = "six"
backend = "[fd00:3::10]:8080"
protocol = "http"
hosts = ["six.example.org"]
check_interval = "100ms"
`

func testRoutes(t *testing.T) []cluster.IngressRoute {
	t.Helper()
	c, err := cluster.Parse("t.toml", []byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	return c.IngressRoutes()
}

func TestGenerate(t *testing.T) {
	routes := testRoutes(t)
	cfg := string(Generate(routes))
	if again := string(Generate(routes)); again != cfg {
		t.Fatal("Generate is not deterministic")
	}
	for _, tc := range []struct {
		name string
		want []string // lines, in this order
	}{
		{"http frontend routes by host", []string{
			"frontend http", "\tbind 0.0.0.0:80", "\tmode http",
			"\tacl host_web hdr(host),field(1,:) -i www.example.org example.org",
			"\tacl host_blog hdr(host),field(1,:) -i blog.example.org",
			"\tuse_backend svc_web if host_web", "\tuse_backend svc_blog if host_blog", "\tuse_backend svc_six if host_six",
			"\tdefault_backend unknown_host"}},
		{"unknown host page", []string{"backend unknown_host",
			`	http-request return status 503 content-type text/plain string "503 Service Unavailable: no service answers to this host name here.\n"`}},
		{"tls by SNI", []string{"frontend tls", "\tbind 0.0.0.0:443", "\tmode tcp", "\ttcp-request inspect-delay 5s",
			"\tuse_backend svc_secure if { req.ssl_sni -i secure.example.org }"}},
		{"tcp on its own port", []string{"frontend tcp_shell", "\tbind 0.0.0.0:2222", "\tmode tcp", "\tdefault_backend svc_shell"}},
		{"http backend checks", []string{"backend svc_web", "\tmode http", "\toption httpchk GET /healthz",
			`	http-request return status 503 content-type text/plain string "503 Service Unavailable: web is down (its health check fails); try again later.\n" if { nbsrv lt 1 }`,
			"\tserver c-web 10.0.3.10:8080 check inter 100ms fall 2 rise 1"}},
		{"tcp backend", []string{"backend svc_shell", "\tmode tcp", "\tserver c-web 10.0.3.10:2200 check inter 100ms fall 2 rise 1"}},
		{"IPv6 backend", []string{"backend svc_six", "\toption httpchk GET /", "\tserver backend [fd00:3::10]:8080 check"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rest := cfg
			for _, l := range tc.want {
				i := strings.Index(rest, "\n"+l)
				if i < 0 {
					t.Fatalf("no line %q (in order) in:\n%s", l, cfg)
				}
				rest = rest[i+1+len(l):]
			}
		})
	}
	// Only what is configured: no tls or http frontend without services.
	tcpOnly := string(Generate(routes[3:4]))
	if strings.Contains(tcpOnly, "frontend http") || strings.Contains(tcpOnly, "frontend tls") || !strings.Contains(tcpOnly, "frontend tcp_shell") {
		t.Errorf("tcp-only config:\n%s", tcpOnly)
	}
}

// TestHaproxyAccepts checks the generated configs with haproxy itself.
func TestHaproxyAccepts(t *testing.T) {
	testenv.NeedTools(t, "haproxy")
	routes := testRoutes(t)
	for _, tc := range []struct {
		name   string
		routes []cluster.IngressRoute
	}{
		{"all", routes},
		{"http only", routes[:2]},
		{"tls only", routes[2:3]},
		{"tcp only", routes[3:4]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "haproxy.cfg")
			if err := os.WriteFile(f, Generate(tc.routes), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("haproxy", "-c", "-f", f).CombinedOutput()
			if err != nil || strings.Contains(string(out), "WARNING") {
				t.Fatalf("haproxy -c: %v\n%s", err, out)
			}
		})
	}
	// and it must be able to say no.
	f := filepath.Join(t.TempDir(), "haproxy.cfg")
	os.WriteFile(f, append(Generate(routes), "\tserver broken 10.0.3.10:99999\n"...), 0o644)
	if out, err := exec.Command("haproxy", "-c", "-f", f).CombinedOutput(); err == nil {
		t.Fatalf("haproxy -c accepted a bad port:\n%s", out)
	}
}
