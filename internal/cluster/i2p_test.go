package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/cluster/plan"
)

// i2pSvcs serves web (http, on node01) and ssh (tcp, on node02) over i2p;
// blog (tls, node02) is not.
const i2pSvcs = webSvc + "i2p = true\n" +
	"[[service]]\nname = \"ssh\"\ncontainer = \"c-blog\"\nport = 22\nprotocol = \"tcp\"\npublic_port = 2222\ni2p = true\n" +
	"[[service]]\nname = \"blog\"\ncontainer = \"c-blog\"\nport = 443\nprotocol = \"tls\"\nhosts = [\"blog.example.org\"]\n"

const (
	addrA = "yki53a2rw6v5eakh6nan3tj46xhnbsutmbktawuaz7d7l5r5smca.b32.i2p"
	addrB = "xlts22vlmgqu243rehtroxkjhuobq3ujxe2etgngcvqd5l5g3nkq.b32.i2p"
)

func i2pClient(name, where, dest string, port int) string {
	return fmt.Sprintf("[[i2p.client]]\nname = %q\n%s\ndestination = %q\nport = %d\n", name, where, dest, port)
}

func TestI2PErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		at        string // the error's line: the first line containing at after the last "[[i2p.client]]" or "[i2p]" (or [[service]])
		want      string
	}{
		{"unknown destination service", i2pClient("x", `nodes = ["node02"]`, "wiki", 8081),
			"destination", `i2p client "x": destination "wiki" is not a [[service]] (expected one with i2p = true: web, ssh; or a .b32.i2p address)`},
		{"service without i2p", i2pClient("x", `nodes = ["node02"]`, "blog", 8081),
			"destination", `i2p client "x": service "blog" is not served over i2p (expected i2p = true in its [[service]])`},
		{"short address", i2pClient("x", `nodes = ["node02"]`, addrA[1:], 8081),
			"destination", `i2p client "x": destination "` + addrA[1:] + `" is not a .b32.i2p address`},
		{"upper-case address", i2pClient("x", `nodes = ["node02"]`, strings.ToUpper(addrA[:52])+".b32.i2p", 8081),
			"destination", `i2p client "x": destination "` + strings.ToUpper(addrA[:52]) + `.b32.i2p" is not a .b32.i2p address (expected 52 lower-case base32`},
		{"hostname destination", i2pClient("x", `nodes = ["node02"]`, "stats.i2p", 8081),
			"destination", `i2p client "x": destination "stats.i2p" is not a .b32.i2p address`},
		{"no destination", "[[i2p.client]]\nname = \"x\"\nnodes = [\"node02\"]\nport = 8081\n",
			"[[i2p.client]]", `i2p client "x" has no destination`},
		{"no nodes or roles", i2pClient("x", "", addrA, 8081),
			"[[i2p.client]]", `i2p client "x" has neither nodes nor roles`},
		{"unknown node", i2pClient("x", `nodes = ["node09"]`, addrA, 8081),
			"nodes", `i2p client "x": node "node09" is not in the inventory`},
		{"bad role", i2pClient("x", `roles = ["boss"]`, addrA, 8081),
			"roles", `unknown role "boss" (expected worker, gateway, router)`},
		{"no port", "[[i2p.client]]\nname = \"x\"\nnodes = [\"node02\"]\ndestination = \"web\"\n",
			"[[i2p.client]]", `i2p client "x": port = 0 (expected the port i2pd listens on`},
		{"port taken on a node", i2pClient("a", `roles = ["worker"]`, "web", 8081) + i2pClient("b", `nodes = ["node02"]`, addrA, 8081),
			"port", `i2p client "b": port 8081 on node node02 is taken by i2p client "a" (line `},
		{"duplicate name", i2pClient("a", `nodes = ["gw"]`, "web", 8081) + i2pClient("a", `nodes = ["gw"]`, "ssh", 8082),
			"name", `duplicate i2p client name "a" (also line `},
		{"bad name", i2pClient("A b", `nodes = ["gw"]`, "web", 8081),
			"name", `bad name "A b"`},
		{"bad listen address", i2pClient("x", `nodes = ["gw"]`+"\naddress = \"localhost\"", "web", 8081),
			"address", `malformed IPv4 address "localhost"`},
		{"unknown key", i2pClient("x", `nodes = ["gw"]`, "web", 8081) + "local_port = 1\n",
			"local_port", `unknown key "local_port" in [i2p.client] (expected one of: name, nodes, roles, destination, port, address)`},
		{"i2p not a bool", "[[service]]\nname = \"x\"\ncontainer = \"c-web\"\nport = 80\nprotocol = \"http\"\nhosts = [\"x.example.org\"]\ni2p = \"yes\"\n",
			"i2p", `incompatible types`},
		{"missing addresses file", "[i2p]\naddresses = \"nope.txt\"\n",
			"addresses", `[i2p] addresses: open `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := svcBase + i2pSvcs + tc.src
			tail := max(strings.LastIndex(src, "[[i2p.client]]"), strings.LastIndex(src, "[i2p]"), strings.LastIndex(src, "[[service]]"))
			line := strings.Count(src[:tail+strings.Index(src[tail:], tc.at)], "\n") + 1
			want := fmt.Sprintf("c.toml:%d: %s", line, tc.want)
			dir := t.TempDir() // [i2p] addresses is relative to the config's directory
			_, err := Parse(filepath.Join(dir, "c.toml"), []byte(src))
			if err == nil {
				t.Fatalf("no error, want %q", want)
			}
			if got := strings.ReplaceAll(err.Error(), dir+"/", ""); !strings.Contains(got, want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, want)
			}
		})
	}
}

func TestI2PAddressesFile(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       string // "" ok, else the error (after the file's name)
	}{
		{"ok", "# from node01\nweb " + addrA + "\n\nssh " + addrB + "\nweb " + addrA + "\ngone " + addrB + "\n", ""},
		{"bad line", "web " + addrA + "\nssh\n", `:2: "ssh" (expected "SERVICE xxxx.b32.i2p")`},
		{"bad address", "web " + addrA[:20] + ".b32.i2p\n", `:1: "web ` + addrA[:20] + `.b32.i2p" (expected`},
		{"two addresses", "web " + addrA + "\nweb " + addrB + "\n", `:2: service web has another address on line 1 (expected one: keep the line of the node that hosts it now)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "addrs"), []byte(tc.file), 0o644); err != nil {
				t.Fatal(err)
			}
			src := svcBase + i2pSvcs + "[i2p]\naddresses = \"addrs\"\n" + i2pClient("web", `roles = ["gateway"]`, "web", 8081)
			c, err := Parse(filepath.Join(dir, "c.toml"), []byte(src))
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "addrs")+tc.want) {
					t.Errorf("error %v, want %s", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.IngressRoutes()[0].I2PAddress; got != addrA {
				t.Errorf("web's address %q", got)
			}
		})
	}
}

func TestI2PPlan(t *testing.T) {
	dir := t.TempDir()
	src := svcBase + i2pSvcs + "[i2p]\naddresses = \"addrs\"\n" +
		i2pClient("web", `roles = ["gateway"]`, "web", 8081) +
		i2pClient("ssh", `nodes = ["node01", "gw"]`, "ssh", 2222) + "address = \"10.0.3.1\"\n" +
		i2pClient("stats", `nodes = ["node02"]`, addrB, 8080)
	parse := func(addrs string) *Config {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "addrs"), []byte(addrs), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := Parse(filepath.Join(dir, "c.toml"), []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	byNode := func(c *Config) map[string]*plan.I2P {
		m := map[string]*plan.I2P{}
		for _, p := range c.Resolve() {
			m[p.Name] = p.I2P
		}
		return m
	}

	// Before first boot no address is known: the servers are planned,
	// the clients naming services are not, and config check says why.
	c := parse("")
	got := byNode(c)
	web := plan.I2PServer{Service: "web", Type: "http", Host: "10.0.3.10", Port: 8080, HostOverride: "www.example.org"}
	ssh := plan.I2PServer{Service: "ssh", Type: "server", Host: "10.0.3.11", Port: 22}
	stats := plan.I2PClient{Name: "stats", Destination: addrB, Address: "127.0.0.1", Port: 8080}
	want := map[string]*plan.I2P{
		"gw":     nil,
		"node01": {Servers: []plan.I2PServer{web}},
		"node02": {Servers: []plan.I2PServer{ssh}, Clients: []plan.I2PClient{stats}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("plans without addresses:\n%s\nwant:\n%s", dump(got), dump(want))
	}
	wantNotes := []string{
		"i2p client ssh: left out of the plans until service ssh's address is known (made on node02 at first boot; collect /var/lib/mkimage/i2p-addresses into addrs)",
		"i2p client web: left out of the plans until service web's address is known (made on node01 at first boot; collect /var/lib/mkimage/i2p-addresses into addrs)",
	}
	if !reflect.DeepEqual(c.I2PNotes(), wantNotes) {
		t.Errorf("notes:\n%s\nwant:\n%s", strings.Join(c.I2PNotes(), "\n"), strings.Join(wantNotes, "\n"))
	}
	lines := reached(c)
	wantLines := []string{
		"web: http://www.example.org/ → gateway gw:80 → c-web 10.0.3.10:8080 on node01",
		"web: i2p (address made on node01 at first boot) → c-web 10.0.3.10:8080 on node01",
		"ssh: tcp port 2222 → gateway gw:2222 → c-blog 10.0.3.11:22 on node02",
		"ssh: i2p (address made on node02 at first boot) → c-blog 10.0.3.11:22 on node02",
		"blog: tls blog.example.org (SNI) → gateway gw:443 → c-blog 10.0.3.11:443 on node02",
	}
	if strings.Join(lines, "\n") != strings.Join(wantLines, "\n") {
		t.Errorf("Reached:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(wantLines, "\n"))
	}

	// With the nodes' addresses collected, the clients are planned.
	c = parse("web " + addrA + "\nssh " + addrB + "\n")
	got = byNode(c)
	want = map[string]*plan.I2P{
		"gw": {Clients: []plan.I2PClient{
			{Name: "web", Destination: addrA, Service: "web", Address: "127.0.0.1", Port: 8081},
			{Name: "ssh", Destination: addrB, Service: "ssh", Address: "10.0.3.1", Port: 2222},
		}},
		"node01": {Servers: []plan.I2PServer{web}, Clients: []plan.I2PClient{{Name: "ssh", Destination: addrB, Service: "ssh", Address: "10.0.3.1", Port: 2222}}},
		"node02": {Servers: []plan.I2PServer{ssh}, Clients: []plan.I2PClient{stats}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("plans with addresses:\n%s\nwant:\n%s", dump(got), dump(want))
	}
	if n := c.I2PNotes(); len(n) != 0 {
		t.Errorf("notes %q", n)
	}
	if l := c.IngressRoutes()[0].Reached(c.Gateways()); l[len(l)-1] != "web: i2p "+addrA+" → c-web 10.0.3.10:8080 on node01" {
		t.Errorf("Reached %q", l)
	}
	// The unknown node's plan never has tunnels.
	if u := c.Bake().Unknown; u.I2P != nil {
		t.Errorf("unknown node: %+v", u.I2P)
	}
}

func dump(m map[string]*plan.I2P) string {
	var b strings.Builder
	for _, n := range []string{"gw", "node01", "node02"} {
		fmt.Fprintf(&b, "%s: %+v\n", n, m[n])
		if m[n] != nil {
			fmt.Fprintf(&b, "  %+v\n", *m[n])
		}
	}
	return b.String()
}
