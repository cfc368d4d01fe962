package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/cluster/plan"
)

func TestIngress(t *testing.T) {
	const cfg = "frontend http\n\tbind 0.0.0.0:80\n\nbackend svc_web\n"
	for _, tc := range []struct {
		name      string
		had, plan string // the root's file before ("" none), the plan's
		want      string // after ("" none)
	}{
		{"gateway gets it", "", cfg, cfg},
		{"gateway's old file replaced", "# by hand\n", cfg, cfg},
		{"no services: root's own kept", "# by hand\n", "", "# by hand\n"},
		{"no services, no file", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			p := filepath.Join(root, plan.HAProxyPath)
			if tc.had != "" {
				put(t, p, tc.had)
			}
			env := Env{Root: root, Node: plan.Plan{Role: "gateway", HAProxyCfg: tc.plan}}
			for range 2 { // every boot: twice is once
				if err := Ingress(env); err != nil {
					t.Fatal(err)
				}
			}
			if tc.plan != "" {
				if line, ok := reportIngress(env); !ok || line != "haproxy.cfg: 1 services" {
					t.Errorf("report %q, %v", line, ok)
				}
			}
			got, err := os.ReadFile(p)
			if tc.want == "" {
				if err == nil {
					t.Errorf("%s written: %q", plan.HAProxyPath, got)
				}
				return
			}
			if string(got) != tc.want {
				t.Errorf("%s: %q, %v; want %q", plan.HAProxyPath, got, err, tc.want)
			}
		})
	}
}

func TestReportIngress(t *testing.T) {
	const cfg = "frontend http\n\nbackend svc_web\n\nbackend svc_blog\n"
	for _, tc := range []struct {
		name, had string // "" none
		want      string
		ok        bool
	}{
		{"written", cfg, "haproxy.cfg: 2 services", true},
		{"changed by hand", cfg + "# more\n", "haproxy.cfg differs from the plan", false},
		{"missing", "", "haproxy.cfg MISSING", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if tc.had != "" {
				put(t, filepath.Join(root, plan.HAProxyPath), tc.had)
			}
			line, ok := reportIngress(Env{Root: root, Node: plan.Plan{HAProxyCfg: cfg}})
			if !strings.HasPrefix(line, tc.want) || ok != tc.ok {
				t.Errorf("%q, %v; want %q, %v", line, ok, tc.want, tc.ok)
			}
		})
	}
}
