package builder

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/cluster/plan"
)

// TestConfigIngress: with services, the baked plan carries haproxy.cfg
// for the gateways and no one else; without, for no one.
func TestConfigIngress(t *testing.T) {
	seed, err := os.ReadFile("../examples/seed-cluster.toml")
	if err != nil {
		t.Fatal(err)
	}
	const svc = "\n[[service]]\nname = \"web\"\ncontainer = \"haproxy\"\nport = 8080\nprotocol = \"http\"\nhosts = [\"www.example.org\"]\n"
	for _, tc := range []struct {
		name     string
		extra    string
		gateways int // nodes with a haproxy.cfg
	}{
		{"seed without services", "", 0},
		{"seed with a service", svc, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "c.toml")
			if err := os.WriteFile(f, append(append([]byte{}, seed...), tc.extra...), 0o644); err != nil {
				t.Fatal(err)
			}
			in := &inputs{}
			if err := in.loadConfig(context.Background(), &Options{Config: f, Log: io.Discard}); err != nil {
				t.Fatal(err)
			}
			var b plan.Baked
			if err := json.Unmarshal(in.cluster, &b); err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, p := range b.Nodes {
				if p.HAProxyCfg == "" {
					continue
				}
				n++
				if p.Role != "gateway" || !strings.Contains(p.HAProxyCfg, "\tserver haproxy 10.0.3.10:8080 check") {
					t.Errorf("node %s (%s): haproxy.cfg\n%s", p.Name, p.Role, p.HAProxyCfg)
				}
			}
			if n != tc.gateways {
				t.Errorf("%d nodes with haproxy.cfg, want %d", n, tc.gateways)
			}
		})
	}
}
