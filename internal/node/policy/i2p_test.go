package policy

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/mkimage/mkimage/internal/cluster/plan"
	"github.com/mkimage/mkimage/internal/i2p"
)

const farAddr = "yki53a2rw6v5eakh6nan3tj46xhnbsutmbktawuaz7d7l5r5smca.b32.i2p"

func i2pPlan() *plan.I2P {
	return &plan.I2P{
		Servers: []plan.I2PServer{
			{Service: "web", Type: "http", Host: "10.0.3.10", Port: 8080, HostOverride: "www.example.org"},
			{Service: "ssh", Type: "server", Host: "10.0.3.11", Port: 22},
		},
		Clients: []plan.I2PClient{{Name: "stats", Destination: farAddr, Address: "127.0.0.1", Port: 8081}},
	}
}

// i2pRoot is a Debian root with systemd and i2pd installed as its
// package installs it, and user i2pd: as root the test gives it ids of
// its own (to see the chown), otherwise the test's own.
func i2pRoot(t *testing.T) (root string, uid, gid int) {
	t.Helper()
	root = t.TempDir()
	uid, gid = os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = 4242, 4343
	}
	for _, f := range []string{"lib/systemd/systemd", "usr/sbin/i2pd", "lib/systemd/system/i2pd.service", "etc/i2pd/tunnels.d/README"} {
		put(t, filepath.Join(root, f), "")
	}
	put(t, filepath.Join(root, "etc/passwd"), fmt.Sprintf("root:x:0:0:root:/root:/bin/bash\ni2pd:x:%d:%d::/var/lib/i2pd:/usr/sbin/nologin\n", uid, gid))
	// Debian's package: tunnels.conf.d is a symlink to tunnels.d.
	if err := os.Symlink("tunnels.d", filepath.Join(root, "etc/i2pd/tunnels.conf.d")); err != nil {
		t.Fatal(err)
	}
	return root, uid, gid
}

const wantTunnels = generated + `
[mkimage-server-web]
type = http
host = 10.0.3.10
port = 8080
keys = mkimage-web.dat
hostoverride = www.example.org

[mkimage-server-ssh]
type = server
host = 10.0.3.11
port = 22
keys = mkimage-ssh.dat

[mkimage-client-stats]
type = client
address = 127.0.0.1
port = 8081
destination = ` + farAddr + "\n"

// TestI2P applies the i2p part to a fake root on two boots: the keys are
// made on the first, kept on the second, and the files say the same.
func TestI2P(t *testing.T) {
	root, uid, gid := i2pRoot(t)
	log := &lines{}
	env := Env{Root: root, Node: plan.Plan{I2P: i2pPlan()}, Log: log.logf}
	if err := I2P(env); err != nil {
		t.Fatal(err)
	}
	tunnels := filepath.Join(root, plan.I2PTunnelsPath)
	if got := get(t, tunnels); got != wantTunnels {
		t.Errorf("tunnels:\n%s\nwant:\n%s", got, wantTunnels)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/i2pd/tunnels.d/mkimage.conf")); err != nil {
		t.Errorf("not written through the package's symlink: %v", err)
	}
	addrs := map[string]string{}
	keyFiles := map[string][]byte{}
	stats := map[string]os.FileInfo{}
	for _, svc := range []string{"web", "ssh"} {
		p := filepath.Join(root, plan.I2PDataDir, plan.I2PKeyFile(svc))
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		k, err := i2p.Parse(b)
		if err != nil || len(b) != i2p.KeyFileSize || k.SigType != i2p.SigTypeEd25519 || k.CryptoType != i2p.CryptoTypeElGamal {
			t.Fatalf("%s: %d bytes, %+v, %v", p, len(b), k, err)
		}
		fi, _ := os.Stat(p)
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm() != 0o600 || int(st.Uid) != uid || int(st.Gid) != gid {
			t.Errorf("%s: mode %v owner %d:%d, want 0600 %d:%d", p, fi.Mode(), st.Uid, st.Gid, uid, gid)
		}
		addrs[svc], keyFiles[svc], stats[svc] = k.Address, b, fi
	}
	if addrs["web"] == addrs["ssh"] {
		t.Error("two services with one address")
	}
	wantAddrs := "web " + addrs["web"] + "\nssh " + addrs["ssh"] + "\n"
	if got := get(t, filepath.Join(root, plan.I2PAddressesPath)); got != wantAddrs {
		t.Errorf("addresses file %q, want %q", got, wantAddrs)
	}
	if l, err := os.Readlink(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/i2pd.service")); err != nil || l != "/lib/systemd/system/i2pd.service" {
		t.Errorf("i2pd not enabled: %q %v", l, err)
	}
	wantLog := []string{
		"nodeinit: i2p: service web: new destination keys in /var/lib/i2pd/mkimage-web.dat",
		"nodeinit: i2p: service web reachable at " + addrs["web"],
		"nodeinit: i2p: service ssh: new destination keys in /var/lib/i2pd/mkimage-ssh.dat",
		"nodeinit: i2p: service ssh reachable at " + addrs["ssh"],
	}
	if strings.Join(log.l, "\n") != strings.Join(wantLog, "\n") {
		t.Errorf("log:\n%s\nwant:\n%s", strings.Join(log.l, "\n"), strings.Join(wantLog, "\n"))
	}
	if line, ok := reportI2P(env); !ok || line != "i2p: 2 server, 1 client tunnels" {
		t.Errorf("report %q %v", line, ok)
	}

	// Next boot: nothing is rewritten, the keys are the same files.
	tst, _ := os.Stat(tunnels)
	log.l = nil
	if err := I2P(env); err != nil {
		t.Fatal(err)
	}
	for svc, b := range keyFiles {
		p := filepath.Join(root, plan.I2PDataDir, plan.I2PKeyFile(svc))
		fi, _ := os.Stat(p)
		if got, _ := os.ReadFile(p); !bytes.Equal(got, b) || !os.SameFile(fi, stats[svc]) {
			t.Errorf("%s replaced on the second boot", p)
		}
	}
	if fi, _ := os.Stat(tunnels); !os.SameFile(fi, tst) {
		t.Error("tunnels file rewritten though unchanged")
	}
	if want := wantLog[1] + "\n" + wantLog[3]; strings.Join(log.l, "\n") != want {
		t.Errorf("second boot's log:\n%s\nwant:\n%s", strings.Join(log.l, "\n"), want)
	}

	// A power cut after the key was written but before its owner and
	// mode were set: the next boot finishes the job and keeps the key.
	web := filepath.Join(root, plan.I2PDataDir, plan.I2PKeyFile("web"))
	os.Chmod(web, 0o644)
	if os.Getuid() == 0 {
		os.Chown(web, 0, 0)
	}
	if err := I2P(env); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(web)
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o600 || int(st.Uid) != uid || !bytes.Equal([]byte(get(t, web)), keyFiles["web"]) {
		t.Errorf("after the cut: mode %v uid %d", fi.Mode(), st.Uid)
	}

	// A broken key file is an error and is left alone (a new key would
	// be a new address); the other service still gets its tunnel.
	os.WriteFile(web, []byte("junk"), 0o600)
	err := I2P(env)
	if err == nil || !strings.Contains(err.Error(), "service web: "+web+": not an i2pd key file i2pd can use") {
		t.Errorf("broken key file: %v", err)
	}
	if get(t, web) != "junk" {
		t.Error("broken key file replaced")
	}
	if got := get(t, filepath.Join(root, plan.I2PAddressesPath)); got != "ssh "+addrs["ssh"]+"\n" {
		t.Errorf("addresses with web broken: %q", got)
	}
	os.WriteFile(web, keyFiles["web"], 0o600)

	// The services leave the node: its tunnels and addresses go, the
	// keys stay for when a service comes back.
	env.Node.I2P = nil
	for range 2 {
		if err := I2P(env); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{tunnels, filepath.Join(root, plan.I2PAddressesPath)} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s still there without tunnels", p)
		}
	}
	if !bytes.Equal([]byte(get(t, web)), keyFiles["web"]) {
		t.Error("keys removed with the tunnels")
	}
	env.Node.I2P = i2pPlan()
	log.l = nil
	if err := I2P(env); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(log.l, "\n"), "service web reachable at "+addrs["web"]) {
		t.Errorf("web came back with another address: %q", log.l)
	}
}

// TestI2PKeptKeys: a key file already in the data dir (made by i2pd
// itself, or restored) is the service's: used, never replaced.
func TestI2PKeptKeys(t *testing.T) {
	root, _, _ := i2pRoot(t)
	k, _ := i2p.NewKeys()
	want, _ := i2p.Parse(k)
	p := filepath.Join(root, plan.I2PDataDir, plan.I2PKeyFile("web"))
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, k, 0o600)
	env := Env{Root: root, Node: plan.Plan{I2P: &plan.I2P{Servers: i2pPlan().Servers[:1]}}, Log: t.Logf}
	if err := I2P(env); err != nil {
		t.Fatal(err)
	}
	if got := get(t, filepath.Join(root, plan.I2PAddressesPath)); got != "web "+want.Address+"\n" {
		t.Errorf("addresses %q, want web %s", got, want.Address)
	}
	if !bytes.Equal([]byte(get(t, p)), k) {
		t.Error("existing key file replaced")
	}
}

// TestI2PNoI2pd: a root without i2pd gets nothing (not even etc/i2pd,
// which would stand where the package puts a symlink), and says so.
func TestI2PNoI2pd(t *testing.T) {
	root := t.TempDir()
	log := &lines{}
	env := Env{Root: root, Node: plan.Plan{I2P: i2pPlan()}, Log: log.logf}
	if err := I2P(env); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"etc/i2pd", "var/lib/i2pd", "var/lib/mkimage"} {
		if _, err := os.Lstat(filepath.Join(root, d)); err == nil {
			t.Errorf("%s made in a root without i2pd", d)
		}
	}
	if strings.Join(log.l, "|") != "nodeinit: i2p: i2pd not installed in the root; 2 server and 1 client tunnels skipped" {
		t.Errorf("log %q", log.l)
	}
	if line, ok := reportI2P(env); ok || !strings.Contains(line, "i2pd not installed") {
		t.Errorf("report %q %v", line, ok)
	}
}

func TestLookupUser(t *testing.T) {
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if _, _, ok, err := lookupUser(root, "i2pd"); ok || err != nil {
		t.Errorf("no passwd: %v %v", ok, err)
	}
	put(t, filepath.Join(dir, "etc/passwd"), "root:x:0:0:root:/root:/bin/bash\ni2pdx:x:1:1::/:/bin/false\ni2pd:x:104:108::/var/lib/i2pd:/usr/sbin/nologin\n")
	if u, g, ok, err := lookupUser(root, "i2pd"); !ok || err != nil || u != 104 || g != 108 {
		t.Errorf("i2pd: %d %d %v %v", u, g, ok, err)
	}
	if _, _, ok, _ := lookupUser(root, "nobody"); ok {
		t.Error("nobody found")
	}
}
