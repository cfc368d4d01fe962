package firstboot

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mkimage/mkimage/internal/cluster"
	"github.com/mkimage/mkimage/internal/cluster/plan"
	"github.com/mkimage/mkimage/internal/node/sshkey"
	"github.com/mkimage/mkimage/internal/testenv"
)

const (
	diskSectors = 131072 // 64 MiB
	p1Start     = 8192
	p1Size      = 8192
	p2Start     = 16384
	p2Size      = 16384
)

func seed(t testing.TB) *plan.Baked {
	t.Helper()
	c, err := cluster.Load("../../../examples/seed-cluster.toml")
	if err != nil {
		t.Fatal(err)
	}
	return c.Bake()
}

type testLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *testLog) logf(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, a...))
}

func (l *testLog) String() string { return strings.Join(l.lines, "\n") }

// fakeNode makes a root, a sysfs with one NIC and a disk vda whose
// partition 2 is the root, and /dev/vda as a regular image file with an
// MBR laid out as the builder does.
func fakeNode(t *testing.T, mac string) (Env, *testLog) {
	t.Helper()
	d := t.TempDir()
	root, sys, dev := filepath.Join(d, "root"), filepath.Join(d, "sys"), filepath.Join(d, "dev")
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(root, "etc/os-release"), "ID=test\n")
	write(filepath.Join(sys, "class/net/lo/address"), "00:00:00:00:00:00\n")
	write(filepath.Join(sys, "class/net/eth0/address"), mac+"\n")
	vda := filepath.Join(sys, "devices/platform/virtio/block/vda")
	write(filepath.Join(vda, "size"), fmt.Sprint(diskSectors))
	write(filepath.Join(vda, "vda2/partition"), "2\n")
	write(filepath.Join(vda, "vda2/start"), fmt.Sprint(p2Start))
	write(filepath.Join(vda, "vda2/size"), fmt.Sprint(p2Size))
	os.MkdirAll(filepath.Join(sys, "class/block"), 0o755)
	if err := os.Symlink("../../devices/platform/virtio/block/vda/vda2", filepath.Join(sys, "class/block/vda2")); err != nil {
		t.Fatal(err)
	}
	var mbr [512]byte
	copy(mbr[440:], []byte{0x11, 0x22, 0x33, 0x44})
	entry := func(i int, typ byte, start, size uint32) {
		e := mbr[446+16*i:]
		e[4] = typ
		binary.LittleEndian.PutUint32(e[8:], start)
		binary.LittleEndian.PutUint32(e[12:], size)
	}
	entry(0, 0x0c, p1Start, p1Size)
	entry(1, 0x83, p2Start, p2Size)
	mbr[510], mbr[511] = 0x55, 0xAA
	write(filepath.Join(dev, "vda"), "")
	if err := os.WriteFile(filepath.Join(dev, "vda"), mbr[:], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(dev, "vda"), diskSectors*512); err != nil {
		t.Fatal(err)
	}
	l := &testLog{}
	return Env{Root: root, Sys: sys, Dev: dev, RootPart: "vda2", Config: seed(t), Log: l.logf}, l
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mbrOf(t *testing.T, env Env) []byte {
	return []byte(read(t, filepath.Join(env.Dev, "vda"))[:512])
}

func TestRunKnownNode(t *testing.T) {
	env, log := fakeNode(t, "00:1E:06:42:01:01")
	res, err := Run(context.Background(), env)
	if err != nil {
		t.Fatalf("%v\nlog:\n%s", err, log)
	}
	if res.Identity.Plan.Name != "node01" || !res.Identity.Known || res.Identity.Iface != "eth0" {
		t.Fatalf("identity %+v", res.Identity)
	}
	if len(res.Ran) != len(steps) {
		t.Fatalf("ran %v, want all %d steps", res.Ran, len(steps))
	}
	r := func(p string) string { return read(t, filepath.Join(env.Root, p)) }
	if got := r("etc/hostname"); got != "node01\n" {
		t.Errorf("hostname %q", got)
	}
	hosts := r("etc/hosts")
	for _, want := range []string{"127.0.0.1\tlocalhost\n", "192.168.142.11\tnode01.seed.lan node01\n", "192.168.142.56\tnode46.seed.lan node46\n", "192.168.142.254\tmcbin.seed.lan mcbin\n"} {
		if !strings.Contains(hosts, want) {
			t.Errorf("hosts lacks %q:\n%s", want, hosts)
		}
	}
	wantIf := generated + "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet static\n\taddress 192.168.142.11\n\tnetmask 255.255.255.0\n\tgateway 192.168.142.1\n" +
		"\tup ip route replace 192.168.0.0/24 via 192.168.142.254 dev eth0\n\tup ip route replace 172.16.0.0/12 via 192.168.142.254 dev eth0\n"
	if got := r("etc/network/interfaces"); got != wantIf {
		t.Errorf("interfaces:\n%s\nwant:\n%s", got, wantIf)
	}
	if got := r("etc/resolv.conf"); got != generated+"search seed.lan\nnameserver 192.168.142.1\n" {
		t.Errorf("resolv.conf %q", got)
	}
	if id := r("etc/machine-id"); len(id) != 33 || strings.Trim(id[:32], "0123456789abcdef") != "" {
		t.Errorf("machine-id %q", id)
	}
	if got := r("root/.ssh/authorized_keys"); got != env.Config.Cluster.SSHAuthorizedKeys[0]+"\n" {
		t.Errorf("authorized_keys %q", got)
	}
	if got := r("etc/timezone"); got != "Europe/Berlin\n" {
		t.Errorf("timezone %q", got)
	}
	for _, k := range []string{"ed25519", "ecdsa"} {
		p := filepath.Join(env.Root, "etc/ssh/ssh_host_"+k+"_key")
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v mode %v", p, err, fi.Mode())
		}
		if fi, err := os.Stat(p + ".pub"); err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s.pub: %v", p, err)
		}
	}
	for _, d := range []string{".snapshots", "var/lib/lxc"} {
		if fi, err := os.Stat(filepath.Join(env.Root, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v", d, err)
		}
	}
	mbr := mbrOf(t, env)
	if got := binary.LittleEndian.Uint32(mbr[446+16+12:]); got != diskSectors-p2Start {
		t.Errorf("partition 2 size %d, want %d", got, diskSectors-p2Start)
	}
	if got := binary.LittleEndian.Uint32(mbr[446+12:]); got != p1Size {
		t.Errorf("partition 1 size changed to %d", got)
	}
	if bytes.Equal(mbr[440:444], []byte{0x11, 0x22, 0x33, 0x44}) || bytes.Equal(mbr[440:444], make([]byte, 4)) {
		t.Errorf("disk id not renewed: % x", mbr[440:444])
	}

	// Second boot: nothing to do, nothing changes.
	before := map[string]string{}
	for _, p := range []string{"etc/machine-id", "etc/ssh/ssh_host_ed25519_key", "etc/hosts"} {
		before[p] = r(p)
	}
	mbr1 := mbrOf(t, env)
	res, err = Run(context.Background(), env)
	if err != nil || len(res.Ran) != 0 {
		t.Fatalf("second run: ran %v, err %v", res.Ran, err)
	}
	for p, b := range before {
		if r(p) != b {
			t.Errorf("%s changed on the second boot", p)
		}
	}
	if !bytes.Equal(mbr1, mbrOf(t, env)) {
		t.Error("MBR changed on the second boot")
	}
}

func TestSSHKeysWithSSHKeygen(t *testing.T) {
	testenv.NeedTools(t, "ssh-keygen")
	env, _ := fakeNode(t, "00:1e:06:42:01:02")
	if _, err := Run(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ed25519", "ecdsa"} {
		p := filepath.Join(env.Root, "etc/ssh/ssh_host_"+k+"_key")
		out, err := exec.Command("ssh-keygen", "-y", "-f", p).CombinedOutput()
		if err != nil {
			t.Fatalf("ssh-keygen -y -f %s: %v\n%s", p, err, out)
		}
		pub := strings.Fields(read(t, p+".pub"))
		got := strings.Fields(string(out))
		if len(got) < 2 || got[0] != pub[0] || got[1] != pub[1] {
			t.Errorf("%s: ssh-keygen derives %q, .pub has %q", k, got, pub)
		}
		if pub[2] != "root@node02" {
			t.Errorf("comment %q", pub[2])
		}
		// The state records the fingerprint ssh-keygen -l prints.
		out, err = exec.Command("ssh-keygen", "-l", "-f", p+".pub").CombinedOutput()
		if st, _ := ReadState(env.Root); err != nil || st.HostKeys[k] == "" || !strings.Contains(string(out), " "+st.HostKeys[k]+" ") {
			t.Errorf("ssh-keygen -l: %s (%v); %s records %q", out, err, StatePath, st.HostKeys[k])
		}
	}
}

// TestHostKeysKeptAfterCut: the image's host keys are replaced; a key
// written before a power cut that stopped ssh-host-keys short of being
// recorded is kept when the step runs again, and only the half-written
// pair is made anew.
func TestHostKeysKeptAfterCut(t *testing.T) {
	env, log := fakeNode(t, "00:1e:06:42:01:02")
	ssh := filepath.Join(env.Root, "etc/ssh")
	img, err := sshkey.NewEd25519("root@image")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(ssh, 0o755)
	os.WriteFile(filepath.Join(ssh, "ssh_host_ed25519_key"), img.Private, 0o600)
	os.WriteFile(filepath.Join(ssh, "ssh_host_ed25519_key.pub"), img.Public, 0o644)

	all := steps
	defer func() { steps = all }()
	steps = all[:2] // machine-id, ssh-host-keys
	if _, err := Run(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	key := func(typ string) string { return read(t, filepath.Join(ssh, "ssh_host_"+typ+"_key")) }
	if key("ed25519") == string(img.Private) {
		t.Fatal("the image's host key was kept")
	}
	// The cut: ed25519 whole, ecdsa's private half written but not its
	// public one, the step not recorded.
	ed, ecdsa := key("ed25519"), key("ecdsa")
	st, err := ReadState(env.Root)
	if err != nil {
		t.Fatal(err)
	}
	delete(st.Done, StepSSHHostKeys)
	if err := st.write(env.Root); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(ssh, "ssh_host_ecdsa_key.pub"))

	steps = all
	res, err := Run(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(res.Ran, StepSSHHostKeys) {
		t.Fatalf("ran %v", res.Ran)
	}
	if key("ed25519") != ed {
		t.Error("the ed25519 key written before the cut was replaced")
	}
	if !strings.Contains(log.String(), "nodeinit: firstboot: /etc/ssh/ssh_host_ed25519_key kept, written before a power cut (SHA256:") {
		t.Errorf("no line says the key was kept:\n%s", log)
	}
	if key("ecdsa") == ecdsa {
		t.Error("the half-written ecdsa pair was kept")
	}
	st, _ = ReadState(env.Root)
	for _, typ := range []string{"ed25519", "ecdsa"} {
		fp, ok := sshkey.ReadPair(filepath.Join(ssh, "ssh_host_"+typ+"_key"))
		if !ok || st.HostKeys[typ] != fp {
			t.Errorf("%s: key on the card %s (whole: %v), state records %q", typ, fp, ok, st.HostKeys[typ])
		}
	}
}

func TestUnknownNode(t *testing.T) {
	env, log := fakeNode(t, "aa:bb:cc:dd:ee:ff")
	res, err := Run(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	if res.Identity.Known || res.Identity.Plan.Name != "node-aabbccddeeff" {
		t.Fatalf("identity %+v", res.Identity)
	}
	warn := 0
	for _, l := range log.lines {
		if strings.Contains(l, "warning") {
			warn++
			if l != "nodeinit: firstboot: warning: MAC aa:bb:cc:dd:ee:ff (eth0) is not in the inventory; hostname node-aabbccddeeff, DHCP" {
				t.Errorf("warning line %q", l)
			}
		}
	}
	if warn != 1 {
		t.Errorf("%d warning lines, want 1:\n%s", warn, log)
	}
	if got := read(t, filepath.Join(env.Root, "etc/hostname")); got != "node-aabbccddeeff\n" {
		t.Errorf("hostname %q", got)
	}
	if got := read(t, filepath.Join(env.Root, "etc/network/interfaces")); !strings.HasSuffix(got, "auto eth0\niface eth0 inet dhcp\n") {
		t.Errorf("interfaces %q", got)
	}
	if got := read(t, filepath.Join(env.Root, "etc/hosts")); !strings.Contains(got, "127.0.1.1\tnode-aabbccddeeff.seed.lan node-aabbccddeeff\n") {
		t.Errorf("hosts %q", got)
	}
}

func TestNetworkdRoot(t *testing.T) {
	env, _ := fakeNode(t, "00:51:82:11:22:00") // the router
	os.MkdirAll(filepath.Join(env.Root, "usr/lib/systemd"), 0o755)
	os.WriteFile(filepath.Join(env.Root, "usr/lib/systemd/systemd-networkd"), nil, 0o755)
	if _, err := Run(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	want := generated + "[Match]\nMACAddress=00:51:82:11:22:00\n\n[Network]\nAddress=192.168.142.254/24\nDNS=192.168.142.1\nDomains=seed.lan\nIPForward=ipv4\n"
	if got := read(t, filepath.Join(env.Root, "etc/systemd/network/10-cluster.network")); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if _, err := os.Stat(filepath.Join(env.Root, "etc/network/interfaces")); err == nil {
		t.Error("interfaces written on a networkd root")
	}
}

func TestInterfacesDropIn(t *testing.T) {
	env, _ := fakeNode(t, "00:1e:06:42:00:01") // the gateway: keeps its uplink stanza
	main := "auto lo\niface lo inet loopback\nauto eth1\niface eth1 inet dhcp\nsource /etc/network/interfaces.d/*\n"
	os.MkdirAll(filepath.Join(env.Root, "etc/network/interfaces.d"), 0o755)
	os.WriteFile(filepath.Join(env.Root, "etc/network/interfaces"), []byte(main), 0o644)
	if _, err := Run(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(env.Root, "etc/network/interfaces")); got != main {
		t.Errorf("main interfaces file changed: %q", got)
	}
	want := "auto eth0\niface eth0 inet static\n\taddress 192.168.142.1\n\tnetmask 255.255.255.0\n" +
		"\tup ip route replace 192.168.0.0/24 via 192.168.142.254 dev eth0\n\tup ip route replace 172.16.0.0/12 via 192.168.142.254 dev eth0\n"
	if got := read(t, filepath.Join(env.Root, "etc/network/interfaces.d/cluster")); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestPowerCut stops after each number of steps (as if the power went
// out), then boots again: every cut must converge on the same result.
func TestPowerCut(t *testing.T) {
	all := steps
	defer func() { steps = all }()
	for k := 0; k < len(all); k++ {
		t.Run(fmt.Sprintf("after-%d", k), func(t *testing.T) {
			env, _ := fakeNode(t, "00:1e:06:42:01:03")
			steps = all[:k]
			if _, err := Run(context.Background(), env); err != nil {
				t.Fatal(err)
			}
			// The state write in progress had its temporary synced but
			// not its rename (an e2e cut left one so).
			state := filepath.Join(env.Root, StatePath)
			if err := os.MkdirAll(filepath.Dir(state), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(filepath.Dir(state), "."+filepath.Base(state)+".tmp-1234"), []byte(`{"version": 1, "do`), 0o644); err != nil {
				t.Fatal(err)
			}
			// The step in progress did part of its work: the partition
			// entry written, the kernel not yet told, the state not saved.
			if all[k].name == StepGrowPartition {
				d, err := findRootDisk(env.Sys, env.Dev, "vda2")
				if err != nil {
					t.Fatal(err)
				}
				if _, err := growPartition(d, env.Log); err != nil {
					t.Fatal(err)
				}
			}
			steps = all
			res, err := Run(context.Background(), env)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Ran) != len(all)-k {
				t.Errorf("second boot ran %v, want the last %d steps", res.Ran, len(all)-k)
			}
			st, err := ReadState(env.Root)
			if err != nil || len(st.Done) != len(all) || st.Node != "node03" {
				t.Fatalf("state %+v, %v", st, err)
			}
			mbr := mbrOf(t, env)
			if got := binary.LittleEndian.Uint32(mbr[446+16+12:]); got != diskSectors-p2Start {
				t.Errorf("partition 2 size %d", got)
			}
			if got := read(t, filepath.Join(env.Root, "etc/hostname")); got != "node03\n" {
				t.Errorf("hostname %q", got)
			}
			var left []string
			filepath.Walk(env.Root, func(p string, fi os.FileInfo, err error) error {
				if err == nil && strings.Contains(fi.Name(), ".tmp") {
					left = append(left, p)
				}
				return nil
			})
			if len(left) > 0 {
				t.Errorf("temporary files left: %v", left)
			}
		})
	}
}

func TestCardMoved(t *testing.T) {
	env, log := fakeNode(t, "00:1e:06:42:01:04")
	if _, err := Run(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	id := read(t, filepath.Join(env.Root, "etc/machine-id"))
	os.WriteFile(filepath.Join(env.Sys, "class/net/eth0/address"), []byte("00:1e:06:42:01:05\n"), 0o644)
	res, err := Run(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(res.Ran, ",") != "hostname,hosts,network" {
		t.Errorf("ran %v after the move\n%s", res.Ran, log)
	}
	if got := read(t, filepath.Join(env.Root, "etc/hostname")); got != "node05\n" {
		t.Errorf("hostname %q", got)
	}
	if read(t, filepath.Join(env.Root, "etc/machine-id")) != id {
		t.Error("machine-id changed when the card moved")
	}
}

func TestGrowPartitionErrors(t *testing.T) {
	env, _ := fakeNode(t, "00:1e:06:42:01:01")
	d, err := findRootDisk(env.Sys, env.Dev, "vda2")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(rootDisk, []byte) (rootDisk, []byte)
		want   string
	}{
		{"no signature", func(d rootDisk, m []byte) (rootDisk, []byte) { m[510] = 0; return d, m }, "no MBR signature 55 AA at byte 510"},
		{"start mismatch", func(d rootDisk, m []byte) (rootDisk, []byte) { d.Start = 99; return d, m }, "starts at sector 16384 but the kernel says 99"},
		{"logical", func(d rootDisk, m []byte) (rootDisk, []byte) { d.Partition = 5; return d, m }, "only MBR primary partitions 1-4"},
		{"next partition", func(d rootDisk, m []byte) (rootDisk, []byte) {
			m[446+32+4] = 0x83
			binary.LittleEndian.PutUint32(m[446+32+8:], 40000)
			binary.LittleEndian.PutUint32(m[446+32+12:], 1000)
			return d, m
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "vda")
			orig := mbrOf(t, env)
			dd, m := tc.mutate(d, append([]byte(nil), orig...))
			os.WriteFile(img, m, 0o644)
			os.Truncate(img, diskSectors*512)
			dd.DiskPath = img
			size, err := growPartition(dd, t.Logf)
			if tc.want == "" {
				if err != nil || size != 40000-p2Start {
					t.Fatalf("size %d err %v, want %d (up to the next partition)", size, err, 40000-p2Start)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), img) {
				t.Fatalf("err %v, want %q naming %s", err, tc.want, img)
			}
			if got := mbrOf(t, Env{Dev: filepath.Dir(img)}); !bytes.Equal(got, m[:512]) {
				t.Error("MBR written despite the error")
			}
		})
	}
}

func TestSfdiskReadsGrownTable(t *testing.T) {
	testenv.NeedTools(t, "sfdisk")
	env, _ := fakeNode(t, "00:1e:06:42:01:01")
	if _, err := Run(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sfdisk", "--dump", filepath.Join(env.Dev, "vda")).CombinedOutput()
	if err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	dump := strings.ReplaceAll(string(out), " ", "")
	want := fmt.Sprintf("start=%d,size=%d,type=83", p2Start, diskSectors-p2Start)
	if !strings.Contains(dump, want) || !strings.Contains(dump, fmt.Sprintf("start=%d,size=%d,type=c", p1Start, p1Size)) {
		t.Errorf("sfdisk --dump:\n%s\nwant %q", out, want)
	}
}

// bySerial gives the seed's node01 a device tree serial-number and the
// fake machine the same, NUL-terminated as the kernel shows it.
func bySerial(t *testing.T, env Env) {
	t.Helper()
	for i := range env.Config.Nodes {
		if env.Config.Nodes[i].Name == "node01" {
			env.Config.Nodes[i].SerialNumber = "0a1b2c3d"
		}
	}
	p := filepath.Join(env.Sys, "firmware/devicetree/base/serial-number")
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte("0A1B2C3D\x00"), 0o444); err != nil {
		t.Fatal(err)
	}
}

// TestSerialRandomMAC: a board named by its serial whose MAC is random per
// boot keeps its name; the network configuration follows the MAC.
func TestSerialRandomMAC(t *testing.T) {
	env, log := fakeNode(t, "f2:3c:91:00:00:01")
	bySerial(t, env)
	os.MkdirAll(filepath.Join(env.Root, "usr/lib/systemd"), 0o755)
	os.WriteFile(filepath.Join(env.Root, "usr/lib/systemd/systemd-networkd"), nil, 0o755)
	res, err := Run(context.Background(), env)
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	if id := res.Identity; id.Plan.Name != "node01" || id.By != plan.KeySerialNumber || id.Plan.MAC != "f2:3c:91:00:00:01" || id.Iface != "eth0" {
		t.Fatalf("identity %+v", id)
	}
	if !slices.Contains(log.lines, "nodeinit: firstboot: node node01 (serial_number 0a1b2c3d; f2:3c:91:00:00:01 on eth0)") {
		t.Errorf("no identity line:\n%s", log)
	}
	network := filepath.Join(env.Root, "etc/systemd/network/10-cluster.network")
	if got := read(t, network); !strings.Contains(got, "MACAddress=f2:3c:91:00:00:01\n") || !strings.Contains(got, "Address=192.168.142.11/24\n") {
		t.Errorf("network file:\n%s", got)
	}

	os.WriteFile(filepath.Join(env.Sys, "class/net/eth0/address"), []byte("f2:3c:91:00:00:02\n"), 0o644)
	log.lines = nil
	res, err = Run(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(res.Ran, ",") != "hostname,hosts,network" {
		t.Errorf("ran %v after a new MAC\n%s", res.Ran, log)
	}
	if !slices.Contains(log.lines, "nodeinit: firstboot: node01: MAC changed from f2:3c:91:00:00:01 to f2:3c:91:00:00:02; redoing [hostname hosts network]") {
		t.Errorf("no MAC change line:\n%s", log)
	}
	if got := read(t, network); !strings.Contains(got, "MACAddress=f2:3c:91:00:00:02\n") {
		t.Errorf("network file not rewritten for the new MAC:\n%s", got)
	}
	if got := read(t, filepath.Join(env.Root, "etc/hostname")); got != "node01\n" {
		t.Errorf("hostname %q", got)
	}
}

// TestIdentityConflict: a serial naming one node and a MAC naming another
// is an error on the console; the node boots as unknown (DHCP), taking
// neither node's address.
func TestIdentityConflict(t *testing.T) {
	env, log := fakeNode(t, "00:1e:06:42:01:02") // node02's MAC
	bySerial(t, env)                             // node01's serial
	res, err := Run(context.Background(), env)
	var conflict *plan.ConflictError
	if !errors.As(err, &conflict) {
		t.Fatalf("err %v, want a *plan.ConflictError", err)
	}
	if res.Identity.Known || res.Identity.Plan.Name != "node-001e06420102" || !res.Identity.Plan.DHCP() {
		t.Errorf("identity %+v, want the unknown node by DHCP", res.Identity)
	}
	want := "nodeinit: firstboot: error: this machine matches more than one inventory node: serial_number 0a1b2c3d is node node01, mac 00:1e:06:42:01:02 is node node02; fix the inventory; booting as unknown node node-001e06420102 (DHCP)"
	if !slices.Contains(log.lines, want) {
		t.Errorf("log lacks\n%s\n got:\n%s", want, log)
	}
	if len(res.Ran) != len(steps) {
		t.Errorf("ran %v, want every step (as the unknown node)", res.Ran)
	}
	if got := read(t, filepath.Join(env.Root, "etc/hostname")); got != "node-001e06420102\n" {
		t.Errorf("hostname %q", got)
	}
}

// TestUnknownWithSerial: the warning names every key looked up.
func TestUnknownWithSerial(t *testing.T) {
	env, log := fakeNode(t, "aa:bb:cc:dd:ee:ff")
	p := filepath.Join(env.Sys, "firmware/devicetree/base/serial-number")
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, []byte("ffee\x00"), 0o444)
	if _, err := Run(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	want := "nodeinit: firstboot: warning: MAC aa:bb:cc:dd:ee:ff (eth0), serial_number ffee: none is in the inventory; hostname node-aabbccddeeff, DHCP"
	if !slices.Contains(log.lines, want) {
		t.Errorf("log lacks\n%s\ngot:\n%s", want, log)
	}
}

// Boot applies the placement file before identity and policy, and
// leaves the config as built and the node's name in the root for
// nodeinit container; a placement that cannot apply is logged and the
// config taken as built.
func TestBootPlacement(t *testing.T) {
	for _, tc := range []struct {
		placement, want, log string
	}{
		{"haproxy node02\n", "i2p haproxy", "container haproxy runs on node node02"},
		{"haproxy nowhere\n", "i2p", "placement: error: container haproxy: no node nowhere"},
	} {
		env, log := fakeNode(t, "00:1E:06:42:01:02") // node02
		baked, err := json.Marshal(env.Config)
		if err != nil {
			t.Fatal(err)
		}
		bakedPath := filepath.Join(t.TempDir(), "cluster.json")
		if err := os.WriteFile(bakedPath, baked, 0o644); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(env.Root, plan.PlacementFile)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(tc.placement), 0o644); err != nil {
			t.Fatal(err)
		}
		node := Boot(context.Background(), env, bakedPath, func() error { return nil })
		var got []string
		if node.Plan.LXC != nil {
			for _, c := range node.Plan.LXC.Containers {
				got = append(got, c.Name)
			}
		}
		if node.Plan.Name != "node02" || strings.Join(got, " ") != tc.want {
			t.Errorf("%q: node %s with containers %v, want node02 with %s", tc.placement, node.Plan.Name, got, tc.want)
		}
		if !strings.Contains(log.String(), tc.log) {
			t.Errorf("%q: log lacks %q:\n%s", tc.placement, tc.log, log)
		}
		if got := read(t, filepath.Join(env.Root, plan.BootedFile)); got != string(baked) {
			t.Errorf("%q: %s is not the config as built", tc.placement, plan.BootedFile)
		}
		if got := read(t, filepath.Join(env.Root, plan.NodeFile)); got != `{"name":"node02","mac":"00:1e:06:42:01:02"}` {
			t.Errorf("%q: %s holds %q", tc.placement, plan.NodeFile, got)
		}
		if tc.placement == "haproxy node02\n" {
			b, err := plan.ReadBooted(env.Root)
			if err != nil {
				t.Fatal(err)
			}
			self, err := b.Plan(b.Placement)
			if err != nil || self.Name != "node02" || self.MAC != "00:1e:06:42:01:02" || len(self.LXC.Containers) != 2 || len(b.Config.Nodes) != len(env.Config.Nodes) {
				t.Errorf("the booted plan: %+v, %v", self, err)
			}
		}
	}
}
