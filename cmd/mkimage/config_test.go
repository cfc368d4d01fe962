package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigCheckRuns: config check shows a container that runs its
// node's daemons without an address, says what it runs in the container
// notes, and names it where the services are reached.
func TestConfigCheckRuns(t *testing.T) {
	src := `[cluster]
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
[lxc]
bridge = "lxcbr0"
address = "10.0.3.1/24"
[[lxc.container]]
name = "edge"
node = "gw"
rootfs = "debian:bookworm"
runs = ["haproxy"]
[[lxc.container]]
name = "web"
node = "node01"
ip = "10.0.3.10"
[[lxc.container]]
name = "tunnel"
node = "node01"
rootfs = "debian:bookworm"
packages = ["curl"]
runs = ["i2pd"]
[[service]]
name = "www"
container = "web"
port = 8080
protocol = "http"
hosts = ["www.example.org"]
i2p = true
`
	cfg := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	rc, out, errOut := capture(t, "config", "check", cfg)
	if rc != 0 {
		t.Fatalf("exit %d; stderr: %s", rc, errOut)
	}
	for _, want := range []string{
		" edge(runs:haproxy)\n",
		" web=10.0.3.10/24 tunnel(runs:i2pd)\n",
		"\nSERVICES (reached through the gateway's haproxy)\n" +
			"www: http://www.example.org/ → gateway gw:80 (haproxy in container edge on gw) → web 10.0.3.10:8080 on node01\n" +
			"www: i2p (address made on node01 at first boot) → i2pd in container tunnel on node01 → web 10.0.3.10:8080 on node01\n",
		"\nCONTAINERS (their roots are built into the image)\n" +
			"edge on node gw: debian:bookworm + haproxy, configured at its first start; runs haproxy for node gw (shares its network)\n" +
			"tunnel on node node01: debian:bookworm + curl i2pd, configured at its first start; runs i2pd for node node01 (shares its network)\n",
		cfg + ": ok, 2 nodes\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}

	// A service in such a container is refused with the config's line.
	bad := strings.Replace(src, `container = "web"`, `container = "edge"`, 1)
	if err := os.WriteFile(cfg, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	rc, _, errOut = capture(t, "config", "check", cfg)
	if want := cfg + `:35: service "www": container "edge" runs haproxy for node gw and shares its network: it has no address of its own for the ingress to route to`; rc == 0 || !strings.Contains(errOut, want) {
		t.Errorf("exit %d, stderr:\n%s\nwant it to contain:\n%s", rc, errOut, want)
	}
}
