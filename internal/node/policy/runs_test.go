package policy

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/mkimage/mkimage/internal/cluster/plan"
)

const edgeCfg = "frontend http\n\tbind 0.0.0.0:80\n\nbackend svc_web\n"

// edgeNode is a Debian node root with systemd, haproxy and i2pd, holding
// container edge as the build places it (rootfs = "debian:..." with
// runs): its config has plan.AutostartMarker, its root systemd, haproxy
// and i2pd unpacked, and no user i2pd yet (the package's postinst makes
// it at the container's first start).
func edgeNode(t *testing.T) (node, ctRoot string) {
	t.Helper()
	node = t.TempDir()
	ctRoot = filepath.Join(node, "var/lib/lxc/edge/rootfs")
	for _, r := range []string{node, ctRoot} {
		for _, f := range []string{"lib/systemd/systemd", "usr/sbin/i2pd", "usr/sbin/haproxy", "lib/systemd/system/i2pd.service", "lib/systemd/system/haproxy.service", "etc/i2pd/tunnels.d/README"} {
			put(t, filepath.Join(r, f), "")
		}
		if err := os.Symlink("tunnels.d", filepath.Join(r, "etc/i2pd/tunnels.conf.d")); err != nil {
			t.Fatal(err)
		}
	}
	put(t, filepath.Join(ctRoot, "etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n")
	put(t, filepath.Join(node, "var/lib/lxc/edge/config"), plan.AutostartMarker+"\nlxc.rootfs.path = dir:/var/lib/lxc/edge/rootfs\nlxc.net.0.type = empty\nlxc.start.auto = 0\n")
	return node, ctRoot
}

func edgePlan(runs ...string) plan.Plan {
	return plan.Plan{
		Role:       "gateway",
		HAProxyCfg: edgeCfg,
		I2P:        &plan.I2P{Servers: i2pPlan().Servers[:1]},
		LXC: &plan.LXC{Bridge: "ctbr0", Address: "10.0.3.1/24", Network: "veth",
			Containers: []plan.Container{{Name: "edge", Runs: runs}}},
	}
}

// TestRunsInContainer: a container that runs the node's haproxy and i2pd
// gets their config and keys in its own root, shares the node's network,
// and the node's own daemons are held off; when the config moves them
// back, the node runs them again.
func TestRunsInContainer(t *testing.T) {
	node, ct := edgeNode(t)
	log := &lines{}
	env := Env{Root: node, Node: edgePlan(plan.RunsHAProxy, plan.RunsI2PD), Log: log.logf}
	for range 2 { // every boot: twice is once
		for _, f := range []func(Env) error{Ingress, I2P} {
			if err := f(env); err != nil {
				t.Fatal(err)
			}
		}
		if err := pinContainer(env, env.Node.LXC.Containers[0]); err != nil {
			t.Fatal(err)
		}
	}
	if got := get(t, filepath.Join(ct, plan.HAProxyPath)); got != edgeCfg {
		t.Errorf("container's haproxy.cfg %q", got)
	}
	if got := get(t, filepath.Join(ct, plan.I2PTunnelsPath)); got != TunnelsConf(env.Node.I2P) {
		t.Errorf("container's tunnels %q", got)
	}
	key := filepath.Join(ct, plan.I2PDataDir, plan.I2PKeyFile("web"))
	fi, err := os.Stat(key)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Uid != uint32(os.Getuid()) {
		t.Fatalf("key in the container: %v %v", fi, err)
	}
	// No user i2pd yet: i2pd.service gives it the key before it starts.
	if got := get(t, filepath.Join(ct, keysOwnerDropIn)); !strings.Contains(got, "ExecStartPre=+/bin/chown -h i2pd:i2pd /var/lib/i2pd/mkimage-web.dat\n") {
		t.Errorf("keys drop-in %q", got)
	}
	if got := get(t, filepath.Join(node, plan.I2PAddressesPath)); !strings.HasPrefix(got, "web ") {
		t.Errorf("node's addresses file %q", got)
	}
	if got := get(t, filepath.Join(ct, haproxyInContainer)); !strings.Contains(got, "[Service]\nBindReadOnlyPaths=\n") {
		t.Errorf("haproxy.service's bind mount not reset in the container: %q", got)
	}
	for _, d := range []string{"haproxy", "i2pd"} {
		if l, err := os.Readlink(filepath.Join(ct, "etc/systemd/system/multi-user.target.wants", d+".service")); err != nil || l != "/lib/systemd/system/"+d+".service" {
			t.Errorf("%s not enabled in the container: %q %v", d, l, err)
		}
		if got := get(t, filepath.Join(node, keepOffDropIn(d))); !strings.Contains(got, "ConditionPathExists=!/\n") || !strings.Contains(got, "container edge") {
			t.Errorf("node's %s not held off: %q", d, got)
		}
	}
	for _, p := range []string{plan.HAProxyPath, plan.I2PTunnelsPath, plan.I2PDataDir} {
		if _, err := os.Lstat(filepath.Join(node, p)); err == nil {
			t.Errorf("node's own %s written", p)
		}
	}
	conf := get(t, filepath.Join(node, "var/lib/lxc/edge/config"))
	if !strings.Contains(conf, generated+"lxc.net.0.type = none\nlxc.start.auto = 1\n") || strings.Contains(conf, "veth") || strings.Contains(conf, "type = empty") {
		t.Errorf("container config:\n%s", conf)
	}
	if ps, unpinned, _ := pins(env.Node.LXC); len(ps)+len(unpinned) != 0 {
		t.Errorf("antispoof would filter it: %v %v", ps, unpinned)
	}
	if line, ok := reportIngress(env); !ok || line != "haproxy.cfg: 1 services in container edge" {
		t.Errorf("report %q %v", line, ok)
	}
	if line, ok := reportI2P(env); !ok || line != "i2p: 1 server, 0 client tunnels in container edge" {
		t.Errorf("report %q %v", line, ok)
	}

	// Back on the node: the node's daemons may start again.
	env.Node = edgePlan()
	for _, f := range []func(Env) error{Ingress, I2P} {
		if err := f(env); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"haproxy", "i2pd"} {
		if _, err := os.Lstat(filepath.Join(node, keepOffDropIn(d))); err == nil {
			t.Errorf("node's %s still held off", d)
		}
	}
	if got := get(t, filepath.Join(node, plan.HAProxyPath)); got != edgeCfg {
		t.Errorf("node's haproxy.cfg %q", got)
	}
	if line, ok := reportI2P(env); !ok || line != "i2p: 1 server, 0 client tunnels" {
		t.Errorf("report %q %v", line, ok)
	}

	// No longer a gateway while edge ran haproxy: the hold is lifted.
	env.Node = edgePlan(plan.RunsHAProxy)
	if err := Ingress(env); err != nil {
		t.Fatal(err)
	}
	env.Node.HAProxyCfg = ""
	if err := Ingress(env); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(node, keepOffDropIn("haproxy"))); err == nil {
		t.Error("node's haproxy still held off without a haproxy.cfg")
	}
}

// TestRunsInHostileContainer: the container's root is not trusted. Links
// it plants where policy writes lead nowhere outside it: the write fails
// (or replaces the link), and nothing of the node's changes.
func TestRunsInHostileContainer(t *testing.T) {
	for _, tc := range []struct {
		name, link, target string
		fn                 func(Env) error
		fail               bool
	}{
		{"haproxy dir out absolute", "etc/haproxy", "/etc", Ingress, true},
		{"haproxy dir out relative", "etc/haproxy", "../../../../../../etc", Ingress, true},
		{"haproxy.cfg out", plan.HAProxyPath, "/etc/passwd", Ingress, false},
		{"i2pd data dir out", plan.I2PDataDir, "/etc", I2P, true},
		{"i2pd key file out", filepath.Join(plan.I2PDataDir, plan.I2PKeyFile("web")), "/etc/passwd", I2P, true},
		{"systemd dir out", "etc/systemd", "/etc/systemd", I2P, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node, ct := edgeNode(t)
			// What the links aim at, in the node's root and (absolute
			// targets resolve there) the host's: neither may change.
			put(t, filepath.Join(node, "etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n")
			before := snapshotTree(t, node, "var/lib/lxc")
			p := filepath.Join(ct, tc.link)
			os.RemoveAll(p)
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.Symlink(tc.target, p); err != nil {
				t.Fatal(err)
			}
			hostPasswd := get(t, "/etc/passwd")
			env := Env{Root: node, Node: edgePlan(plan.RunsHAProxy, plan.RunsI2PD), Log: t.Logf}
			err := tc.fn(env)
			if tc.fail != (err != nil) {
				t.Errorf("err = %v, want failure %v", err, tc.fail)
			}
			after := snapshotTree(t, node, "var/lib/lxc")
			delete(after, keepOffDropIn("haproxy"))
			delete(after, keepOffDropIn("i2pd"))
			delete(after, "etc/systemd")
			delete(after, "etc/systemd/system")
			delete(after, "etc/systemd/system/haproxy.service.d")
			delete(after, "etc/systemd/system/i2pd.service.d")
			delete(after, plan.I2PAddressesPath)
			delete(after, "var/lib/mkimage")
			for k, v := range after {
				if before[k] != v {
					t.Errorf("node's %s changed: %q", k, v)
				}
			}
			for k := range before {
				if _, ok := after[k]; !ok {
					t.Errorf("node's %s gone", k)
				}
			}
			if get(t, "/etc/passwd") != hostPasswd {
				t.Fatal("the host's /etc/passwd changed")
			}
		})
	}
}

// snapshotTree maps each path under root (but skip) to its type and
// content.
func snapshotTree(t *testing.T, root, skip string) map[string]string {
	t.Helper()
	m := map[string]string{}
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == skip {
			return filepath.SkipDir
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			m[rel] = "-> " + l
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			m[rel] = fi.Mode().String() + " " + string(b)
		default:
			m[rel] = fi.Mode().String()
		}
		return nil
	})
	return m
}
