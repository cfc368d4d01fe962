package cluster

import (
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// svcBase is a gateway, two workers and two containers with pinned
// addresses, one on each worker.
const svcBase = base + `[[node]]
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
`

const webSvc = "[[service]]\nname = \"web\"\ncontainer = \"c-web\"\nport = 8080\nprotocol = \"http\"\nhosts = [\"www.example.org\"]\n"

func TestServiceErrors(t *testing.T) {
	for _, tc := range []struct {
		name, svc string
		at        string // the error's line: the first line containing at in the last [[service]]
		want      string
	}{
		{"unknown container", "[[service]]\nname = \"x\"\ncontainer = \"c-nope\"\nport = 80\nprotocol = \"http\"\nhosts = [\"a.example.org\"]\n",
			"c-nope", `service "x": container "c-nope" is not an [[lxc.container]] (expected one of: c-blog, c-web)`},
		{"no container", "[[service]]\nname = \"x\"\nport = 80\nprotocol = \"http\"\nhosts = [\"a.example.org\"]\n",
			"[[service]]", `service "x" has no container`},
		{"no port", "[[service]]\nname = \"x\"\ncontainer = \"c-web\"\nprotocol = \"tcp\"\npublic_port = 2222\n",
			"[[service]]", `service "x": port = 0 (expected the container's port, 1-65535)`},
		{"bad protocol", "[[service]]\nname = \"x\"\ncontainer = \"c-web\"\nport = 80\nprotocol = \"udp\"\n",
			"protocol", `unknown protocol "udp" (expected http, tls, tcp)`},
		{"duplicate host", webSvc + "[[service]]\nname = \"blog\"\ncontainer = \"c-blog\"\nport = 80\nprotocol = \"http\"\nhosts = [\"blog.example.org\", \"www.example.org\"]\n",
			"blog.example.org", `service "blog": host www.example.org is also service "web"'s (line 37)`},
		{"host twice", "[[service]]\nname = \"x\"\ncontainer = \"c-web\"\nport = 80\nprotocol = \"tls\"\nhosts = [\"a.example.org\", \"a.example.org\"]\n",
			"hosts", `service "x": host a.example.org is listed twice`},
		{"duplicate name", webSvc + strings.Replace(webSvc, "www.", "w2.", 1),
			"name", `duplicate service name "web" (also line 33)`},
		{"two tcp on one port", "[[service]]\nname = \"a\"\ncontainer = \"c-web\"\nport = 22\nprotocol = \"tcp\"\npublic_port = 2222\n[[service]]\nname = \"b\"\ncontainer = \"c-blog\"\nport = 22\nprotocol = \"tcp\"\npublic_port = 2222\n",
			"public_port", `service "b": public_port 2222 is taken by service "a" (line 37)`},
		{"tcp on 80", "[[service]]\nname = \"a\"\ncontainer = \"c-web\"\nport = 22\nprotocol = \"tcp\"\npublic_port = 80\n",
			"public_port", `service "a": public_port = 80 is the ingress's http or tls port`},
		{"tcp without public port", "[[service]]\nname = \"a\"\ncontainer = \"c-web\"\nport = 22\nprotocol = \"tcp\"\n",
			"[[service]]", `service "a": a tcp service needs public_port`},
		{"host on tcp", "[[service]]\nname = \"a\"\ncontainer = \"c-web\"\nport = 22\nprotocol = \"tcp\"\npublic_port = 2222\nhosts = [\"a.example.org\"]\n",
			"hosts", `service "a": a tcp service has no host names`},
		{"http without hosts", "[[service]]\nname = \"a\"\ncontainer = \"c-web\"\nport = 80\nprotocol = \"http\"\n",
			"[[service]]", `service "a": an http service needs hosts`},
		{"public port on http", webSvc + "public_port = 8080\n",
			"public_port", `service "web": public_port is for tcp services (http services share port 80`},
		{"check path on tcp", "[[service]]\nname = \"a\"\ncontainer = \"c-web\"\nport = 22\nprotocol = \"tcp\"\npublic_port = 2222\ncheck_path = \"/\"\n",
			"check_path", `service "a": check_path is for http services`},
		{"bad check path", webSvc + "check_path = \"health z\"\n",
			"check_path", `service "web": check_path "health z" (expected a URL path`},
		{"short interval", webSvc + "check_interval = \"10ms\"\n",
			"check_interval", `service "web": check_interval 10ms (expected 100ms to 1h`},
		{"upper-case host", strings.Replace(webSvc, "www.", "WWW.", 1),
			"hosts", `bad domain "WWW.example.org"`},
		{"backend and container", "[[service]]\nname = \"x\"\ncontainer = \"c-web\"\nbackend = \"[2001:db8::10]:8080\"\nprotocol = \"http\"\nhosts = [\"a.example.org\"]\n",
			"backend", `service "x": backend is instead of container and port`},
		{"backend and port", "[[service]]\nname = \"x\"\nport = 80\nbackend = \"[2001:db8::10]:8080\"\nprotocol = \"http\"\nhosts = [\"a.example.org\"]\n",
			"backend", `service "x": backend is instead of container and port`},
		{"backend over i2p", "[[service]]\nname = \"x\"\nbackend = \"[2001:db8::10]:8080\"\nprotocol = \"http\"\nhosts = [\"a.example.org\"]\ni2p = true\n",
			"i2p", `service "x": i2p = true needs a container`},
		{"backend without port", "[[service]]\nname = \"x\"\nbackend = \"2001:db8::10\"\nprotocol = \"http\"\nhosts = [\"a.example.org\"]\n",
			"backend", `malformed address and port "2001:db8::10" (expected like 192.168.0.5:80 or [2001:db8::10]:8080)`},
		{"backend with zone", "[[service]]\nname = \"x\"\nbackend = \"[fe80::1%eth0]:80\"\nprotocol = \"http\"\nhosts = [\"a.example.org\"]\n",
			"backend", `malformed address and port "[fe80::1%eth0]:80"`},
		{"no gateway", strings.Replace(svcBase, `role = "gateway"`, `role = "worker"`, 1) + webSvc,
			"[[service]]", "services need an ingress node, and the inventory has none (expected a [[node]] with role = \"gateway\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := svcBase + tc.svc
			if strings.HasPrefix(tc.svc, base) {
				src = tc.svc
			}
			tail := strings.LastIndex(src, "[[service]]")
			line := strings.Count(src[:tail+strings.Index(src[tail:], tc.at)], "\n") + 1
			want := fmt.Sprintf("c.toml:%d: %s", line, tc.want)
			_, err := Parse("c.toml", []byte(src))
			if err == nil {
				t.Fatalf("no error, want %q", want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, want)
			}
		})
	}
}

func TestIngressRoutes(t *testing.T) {
	src := svcBase + webSvc + `[[service]]
name = "blog"
container = "c-blog"
port = 443
protocol = "tls"
hosts = ["blog.example.org"]
i2p = true
check_interval = "2s"
[[service]]
name = "ssh"
container = "c-blog"
port = 22
protocol = "tcp"
public_port = 2222
[[service]]
name = "v6"
backend = "[2001:db8::10]:8080"
protocol = "http"
hosts = ["v6.example.org"]
`
	c, err := Parse("c.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	got := c.IngressRoutes()
	want := []IngressRoute{
		{Name: "web", Protocol: "http", Hosts: []string{"www.example.org"}, PublicPort: 80, Container: "c-web", Node: "node01",
			Backend: netip.MustParseAddrPort("10.0.3.10:8080"), CheckPath: "/", CheckInterval: 5 * time.Second},
		{Name: "blog", Protocol: "tls", Hosts: []string{"blog.example.org"}, PublicPort: 443, Container: "c-blog", Node: "node02",
			Backend: netip.MustParseAddrPort("10.0.3.11:443"), CheckInterval: 2 * time.Second, I2P: true},
		{Name: "ssh", Protocol: "tcp", PublicPort: 2222, Container: "c-blog", Node: "node02",
			Backend: netip.MustParseAddrPort("10.0.3.11:22"), CheckInterval: 5 * time.Second},
		// Outside the containers: no node, no host route.
		{Name: "v6", Protocol: "http", Hosts: []string{"v6.example.org"}, PublicPort: 80,
			Backend: netip.MustParseAddrPort("[2001:db8::10]:8080"), CheckPath: "/", CheckInterval: 5 * time.Second},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("IngressRoutes:\n%+v\nwant:\n%+v", got, want)
	}
	// The gateway reaches each container through its node.
	for _, p := range c.Resolve() {
		var rs []string
		for _, r := range p.Routes {
			rs = append(rs, r.Destination+" via "+r.Via)
		}
		want := map[string]string{"gw": "10.0.3.10/32 via 192.168.142.11,10.0.3.11/32 via 192.168.142.12"}[p.Name]
		if strings.Join(rs, ",") != want {
			t.Errorf("node %s routes %q, want %q", p.Name, rs, want)
		}
	}
	lines := reached(c)
	wantLines := []string{
		"web: http://www.example.org/ → gateway gw:80 → c-web 10.0.3.10:8080 on node01",
		"blog: tls blog.example.org (SNI) → gateway gw:443 → c-blog 10.0.3.11:443 on node02",
		"blog: i2p (address made on node02 at first boot) → c-blog 10.0.3.11:443 on node02",
		"ssh: tcp port 2222 → gateway gw:2222 → c-blog 10.0.3.11:22 on node02",
		"v6: http://v6.example.org/ → gateway gw:80 → backend [2001:db8::10]:8080",
	}
	if strings.Join(lines, "\n") != strings.Join(wantLines, "\n") {
		t.Errorf("Reached:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(wantLines, "\n"))
	}
}

// reached is what config check prints under SERVICES: each route's
// Reached lines.
func reached(c *Config) []string {
	var lines []string
	for _, r := range c.IngressRoutes() {
		lines = append(lines, r.Reached(c.Gateways())...)
	}
	return lines
}

// TestREADMEServices: the README's "Reaching services" example, appended
// to the seed example, is valid and config check prints what it shows.
func TestREADMEServices(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(readme), "\n### Reaching services\n")
	if !ok {
		t.Fatal("README.md has no Reaching services section")
	}
	block := func(s, fence string) (string, string) {
		_, s, ok := strings.Cut(s, "\n"+fence+"\n")
		body, rest, ok2 := strings.Cut(s, "\n```\n")
		if !ok || !ok2 {
			t.Fatalf("README.md's Reaching services: no %s block", fence)
		}
		return body + "\n", rest
	}
	toml, rest := block(sec, "```toml")
	shown, _ := block(rest, "```")
	seed, err := os.ReadFile("../../examples/seed-cluster.toml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse("seed+services.toml", append(seed, "\n"+toml...))
	if err != nil {
		t.Fatal(err)
	}
	got := "SERVICES (reached through the gateway's haproxy)\n"
	for _, r := range c.IngressRoutes() {
		for _, l := range r.Reached(c.Gateways()) {
			got += l + "\n"
		}
	}
	if got != shown {
		t.Errorf("README shows:\n%s\nconfig check prints:\n%s", shown, got)
	}
}
