package policy

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/cluster/plan"
	"github.com/mkimage/mkimage/internal/testenv"
)

// TestI2PRealI2pd runs Debian's i2pd on what the i2p part wrote into a
// fake root (its tunnels file, the key files nodeinit made) and reads
// its log: i2pd must load each key file as it is (no "Failed to load
// keyfile", no new keys made, no EdDSA key mismatch), report for each the
// address nodeinit computed, and create the tunnels. It needs no network:
// as root it runs in a network namespace of its own with only loopback,
// and its reseed URLs point nowhere.
func TestI2PRealI2pd(t *testing.T) {
	testenv.NeedTools(t, "i2pd")
	root, _, _ := i2pRoot(t)
	x := i2pPlan()
	x.Clients[0].Port = freePort(t)
	env := Env{Root: root, Node: plan.Plan{I2P: x}, Log: t.Logf}
	if err := I2P(env); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{} // key file → address
	keys := map[string][]byte{}
	for _, l := range strings.Split(strings.TrimSpace(get(t, filepath.Join(root, plan.I2PAddressesPath))), "\n") {
		svc, addr, _ := strings.Cut(l, " ")
		f := plan.I2PKeyFile(svc)
		want[f] = addr
		keys[f] = []byte(get(t, filepath.Join(root, plan.I2PDataDir, f)))
	}

	dir := t.TempDir()
	conf, tunconf, logfile := filepath.Join(dir, "i2pd.conf"), filepath.Join(dir, "tunnels.conf"), filepath.Join(dir, "i2pd.log")
	put(t, conf, "")
	put(t, tunconf, "")
	args := []string{"i2pd",
		// Debian's i2pd.service paths, in the fake root.
		"--datadir=" + filepath.Join(root, plan.I2PDataDir),
		"--conf=" + conf, "--tunconf=" + tunconf,
		"--tunnelsdir=" + filepath.Join(root, "etc/i2pd/tunnels.conf.d"),
		"--log=file", "--logfile=" + logfile, "--loglevel=info",
		// Nothing but the tunnels: no consoles or proxies on the host's
		// ports, no reseed, address book or time sync over the internet.
		"--http.enabled=false", "--httpproxy.enabled=false", "--socksproxy.enabled=false", "--sam.enabled=false",
		"--addressbook.enabled=false", "--nettime.enabled=false", "--upnp.enabled=false",
		"--reseed.urls=http://127.0.0.1:1/", "--reseed.yggurls=http://127.0.0.1:1/",
	}
	dial := func(f func() error) error { return f() }
	if _, err := exec.LookPath("ip"); err == nil && os.Geteuid() == 0 {
		ns := testenv.NewNetns(t, "i2pd")
		testenv.Run(t, "ip", "-n", ns, "link", "set", "lo", "up")
		args = append([]string{"ip", "netns", "exec", ns}, args...)
		dial = func(f func() error) error { return testenv.InNetns(ns, f) }
	} else {
		t.Log("not root: i2pd runs in the host's network namespace (its reseed still goes nowhere)")
	}
	cmd := exec.Command(args[0], args[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})

	// "Clients: N I2P server tunnels created" comes after every tunnel's
	// keys are loaded (ClientContext::ReadTunnels).
	var log string
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(log, "I2P server tunnels created") {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("i2pd exited: %v\n%s\nlog:\n%s", err, out.String(), log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("i2pd created no server tunnels in 20 s; log:\n%s", log)
		}
		time.Sleep(200 * time.Millisecond)
		b, _ := os.ReadFile(logfile)
		log = string(b)
	}
	// The messages of ClientContext::LoadPrivateKeys when it cannot use a
	// key file (and makes a new one), and of the EdDSA signer when the
	// private key is not the identity's.
	for _, bad := range []string{"Failed to load keyfile", "Clients: Can't open file", "New private keys file", "EdDSA public key mismatch"} {
		if strings.Contains(log, bad) {
			t.Errorf("i2pd's log has %q:\n%s", bad, log)
		}
	}
	loaded := regexp.MustCompile(`Clients: Local address ([a-z2-7]{52}\.b32\.i2p) loaded`).FindAllStringSubmatch(log, -1)
	var got []string
	for _, m := range loaded {
		got = append(got, m[1])
	}
	for f, addr := range want {
		if !strings.Contains(strings.Join(got, " "), addr) {
			t.Errorf("%s: nodeinit computed %s; i2pd loaded %q", f, addr, got)
		}
		t.Logf("%s: i2pd loaded %s, as nodeinit computed", f, addr)
	}
	if len(got) != len(want) {
		t.Errorf("i2pd loaded %d local addresses, want %d", len(got), len(want))
	}
	for _, n := range []string{"Clients: 2 I2P server tunnels created", "Clients: 1 I2P client tunnels created"} {
		if !strings.Contains(log, n) {
			t.Errorf("i2pd's log lacks %q:\n%s", n, log)
		}
	}
	// The client tunnel listens where the plan says.
	if err := dial(func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(x.Clients[0].Address, strconv.Itoa(x.Clients[0].Port)), 2*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		t.Errorf("client tunnel: %v", err)
	}
	for f, b := range keys {
		if now := get(t, filepath.Join(root, plan.I2PDataDir, f)); now != string(b) {
			t.Errorf("i2pd changed %s", f)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
