package policy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/cluster/plan"
	"github.com/mkimage/mkimage/internal/node/backup"
)

func put(t *testing.T, p, s string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestGovernor(t *testing.T) {
	sys := t.TempDir()
	for _, p := range []string{"policy0", "policy4"} {
		d := filepath.Join(sys, "devices/system/cpu/cpufreq", p)
		put(t, filepath.Join(d, "scaling_governor"), "schedutil\n")
		put(t, filepath.Join(d, "scaling_available_governors"), "conservative ondemand userspace powersave performance schedutil\n")
	}
	log := &lines{}
	if err := Governor(Env{Sys: sys, Node: plan.Plan{Governor: "ondemand"}, Log: log.logf}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"policy0", "policy4"} {
		if got := get(t, filepath.Join(sys, "devices/system/cpu/cpufreq", p, "scaling_governor")); got != "ondemand\n" {
			t.Errorf("%s: %q", p, got)
		}
	}
	if strings.Join(log.l, "|") != "nodeinit: cpufreq: governor ondemand on 2 policies" {
		t.Errorf("log %q", log.l)
	}
	put(t, filepath.Join(sys, "devices/system/cpu/cpufreq/policy0/scaling_available_governors"), "performance\n")
	err := Governor(Env{Sys: sys, Node: plan.Plan{Governor: "powersave"}, Log: log.logf})
	if err == nil || !strings.Contains(err.Error(), `policy0: governor "powersave" not available (kernel offers: performance)`) {
		t.Errorf("err %v", err)
	}

	empty := &lines{}
	if err := Governor(Env{Sys: t.TempDir(), Node: plan.Plan{Governor: "ondemand"}, Log: empty.logf}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(empty.l, "|") != "nodeinit: cpufreq: not available, governor skipped" {
		t.Errorf("no cpufreq: log %q", empty.l)
	}
}

func lxcPlan() plan.Plan {
	return plan.Plan{Name: "node01", LXC: &plan.LXC{Bridge: "lxcbr0", Address: "10.0.3.1/24", LXCFS: true, Network: "veth",
		Containers: []plan.Container{{Name: "haproxy", IP: "10.0.3.10/24", MAC: "00:16:3e:00:00:10"}, {Name: "later", IP: "10.0.3.12/24"}}}}
}

// TestLXCFiles checks the files LXC writes; the bridge itself is covered
// by TestWorkerAndGateway (here it fails outside a namespace, or without
// root, and only the files are checked).
func TestLXCFiles(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup []string // files in the root
		links map[string]string
	}{
		{"systemd", []string{"usr/lib/systemd/systemd", "usr/bin/lxcfs", "lib/systemd/system/lxcfs.service"},
			map[string]string{"etc/systemd/system/multi-user.target.wants/lxcfs.service": "/lib/systemd/system/lxcfs.service"}},
		{"sysv", []string{"usr/bin/lxcfs", "etc/init.d/lxcfs"},
			map[string]string{"etc/rc2.d/S01lxcfs": "../init.d/lxcfs", "etc/rc5.d/S01lxcfs": "../init.d/lxcfs"}},
		{"no lxcfs", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for _, f := range tc.setup {
				put(t, filepath.Join(root, f), "")
			}
			put(t, filepath.Join(root, "etc/lxc/default.conf"), "lxc.net.0.type = empty\nlxc.apparmor.profile = generated\n")
			put(t, filepath.Join(root, "var/lib/lxc/haproxy/config"), "lxc.rootfs.path = dir:/var/lib/lxc/haproxy/rootfs\nlxc.net.0.type = veth\nlxc.net.0.hwaddr = 00:16:3e:aa:bb:cc\nlxc.uts.name = haproxy\n")
			log := &lines{}
			env := Env{Root: root, Node: lxcPlan(), Log: log.logf}
			for i := 0; i < 2; i++ { // the second run must change nothing
				lxcDefault(env)
				for _, ct := range env.Node.LXC.Containers {
					if err := pinContainer(env, ct); err != nil {
						t.Fatal(err)
					}
				}
				if err := lxcfs(env, true); err != nil {
					t.Fatal(err)
				}
			}
			if got, want := get(t, filepath.Join(root, "etc/lxc/default.conf")), "lxc.apparmor.profile = generated\n"+generated+"lxc.net.0.type = veth\nlxc.net.0.link = lxcbr0\nlxc.net.0.flags = up\n"; got != want {
				t.Errorf("default.conf:\n%s\nwant:\n%s", got, want)
			}
			want := "lxc.rootfs.path = dir:/var/lib/lxc/haproxy/rootfs\nlxc.uts.name = haproxy\n" + generated +
				"lxc.net.0.type = veth\nlxc.net.0.link = lxcbr0\nlxc.net.0.flags = up\nlxc.net.0.veth.pair = vc-haproxy\nlxc.net.0.hwaddr = 00:16:3e:00:00:10\nlxc.net.0.ipv4.address = 10.0.3.10/24\nlxc.net.0.ipv4.gateway = 10.0.3.1\n"
			if got := get(t, filepath.Join(root, "var/lib/lxc/haproxy/config")); got != want {
				t.Errorf("container config:\n%s\nwant:\n%s", got, want)
			}
			if _, err := os.Stat(filepath.Join(root, "var/lib/lxc/later")); err == nil {
				t.Error("config created for a container that does not exist yet")
			}
			for l, target := range tc.links {
				if got, err := os.Readlink(filepath.Join(root, l)); err != nil || got != target {
					t.Errorf("%s -> %q (%v), want %q", l, got, err, target)
				}
			}
			// On systemd, containers wait for the lxcfs mount.
			for name, content := range lxcfsDropIns {
				got, err := os.ReadFile(filepath.Join(root, name))
				if tc.name == "systemd" && string(got) != content {
					t.Errorf("%s: %q (%v), want %q", name, got, err, content)
				}
				if tc.name != "systemd" && err == nil {
					t.Errorf("%s written on a root without systemd", name)
				}
			}
			if tc.links == nil && !strings.Contains(strings.Join(log.l, "\n"), "lxcfs not installed in the root, skipped") {
				t.Errorf("log %q", log.l)
			}
			// lxcfs = false takes the links away again.
			if err := lxcfs(env, false); err != nil {
				t.Fatal(err)
			}
			for l := range tc.links {
				if _, err := os.Lstat(filepath.Join(root, l)); err == nil {
					t.Errorf("%s still there with lxcfs off", l)
				}
			}
			for name := range lxcfsDropIns {
				if _, err := os.Lstat(filepath.Join(root, name)); err == nil {
					t.Errorf("%s still there with lxcfs off", name)
				}
			}
		})
	}
}

func TestBackup(t *testing.T) {
	b := &plan.Backup{OnCalendar: "*-*-* 03:30:00", Cron: "30 3 * * *", Keep: 7, Subvolume: "/", Dir: "/.snapshots"}
	for _, tc := range []struct {
		name  string
		setup string
		files map[string]string
	}{
		{"systemd", "lib/systemd/systemd", map[string]string{
			"etc/systemd/system/nodeinit-snapshot.timer":   generated + "[Unit]\nDescription=btrfs snapshot of / (*-*-* 03:30:00)\n\n[Timer]\nOnCalendar=*-*-* 03:30:00\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n",
			"etc/systemd/system/nodeinit-snapshot.service": generated + "[Unit]\nDescription=btrfs snapshot of /\n\n[Service]\nType=oneshot\nExecStart=/usr/local/sbin/nodeinit-snapshot\n",
		}},
		{"cron.d", "etc/cron.d/.placeholder", map[string]string{"etc/cron.d/nodeinit-snapshot": generated + "30 3 * * * root /usr/local/sbin/nodeinit-snapshot\n"}},
		{"busybox", "bin/busybox", map[string]string{"etc/crontabs/root": "0 1 * * * /bin/true\n30 3 * * * /usr/local/sbin/nodeinit-snapshot\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			put(t, filepath.Join(root, tc.setup), "")
			if tc.name == "busybox" {
				put(t, filepath.Join(root, "etc/crontabs/root"), "0 1 * * * /bin/true\n0 0 * * * /usr/local/sbin/nodeinit-snapshot\n")
			}
			env := Env{Root: root, Node: plan.Plan{Backup: b}, Log: t.Logf}
			for i := 0; i < 2; i++ {
				if err := Backup(env); err != nil {
					t.Fatal(err)
				}
			}
			for f, want := range tc.files {
				if got := get(t, filepath.Join(root, f)); got != want {
					t.Errorf("%s:\n%s\nwant:\n%s", f, got, want)
				}
			}
			script := get(t, filepath.Join(root, SnapshotScript))
			for _, want := range []string{`btrfs subvolume snapshot -r / "/.snapshots/root-$(date +%Y%m%d-%H%M%S)"`, "sort -r | tail -n +8 |", `btrfs subvolume delete "$s"`} {
				if !strings.Contains(script, want) {
					t.Errorf("script lacks %q:\n%s", want, script)
				}
			}
			if out, err := exec.Command("sh", "-n", filepath.Join(root, SnapshotScript)).CombinedOutput(); err != nil {
				t.Errorf("sh -n: %v\n%s", err, out)
			}
			if tc.name == "systemd" {
				l, err := os.Readlink(filepath.Join(root, "etc/systemd/system/timers.target.wants/nodeinit-snapshot.timer"))
				if err != nil || l != "/etc/systemd/system/nodeinit-snapshot.timer" {
					t.Errorf("timer not enabled: %q %v", l, err)
				}
			}
			if fi, _ := os.Stat(filepath.Join(root, SnapshotScript)); fi.Mode().Perm() != 0o755 {
				t.Errorf("script mode %v", fi.Mode())
			}
		})
	}
}

// TestRoleFile: the role lands in the root, and a second boot with the
// same role leaves the file as it is.
func TestRoleFile(t *testing.T) {
	root := t.TempDir()
	env := Env{Root: root, Node: plan.Plan{Role: "gateway"}}
	if err := RoleFile(env); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, plan.RoleFile)
	st, _ := os.Stat(p)
	if got := get(t, p); got != "gateway\n" {
		t.Errorf("%s: %q", p, got)
	}
	if err := RoleFile(env); err != nil {
		t.Fatal(err)
	}
	if st2, _ := os.Stat(p); !os.SameFile(st, st2) {
		t.Error("rewritten though unchanged")
	}
	env.Node.Role = "worker"
	if err := RoleFile(env); err != nil || get(t, p) != "worker\n" {
		t.Errorf("role changed: %v, %q", err, get(t, p))
	}
}

// TestPinBuiltContainer: a container the build placed (its config starts
// with plan.AutostartMarker, lxc.start.auto = 0) gets its network and
// lxc.start.auto = 1 on its own node; one of another node's, which this
// node's plan does not list, is not touched; a hand-made container's
// lxc.start.auto is left as it is.
func TestPinBuiltContainer(t *testing.T) {
	root := t.TempDir()
	built := plan.AutostartMarker + "\nlxc.include = /usr/share/lxc/config/common.conf\nlxc.uts.name = web\nlxc.rootfs.path = dir:/var/lib/lxc/web/rootfs\nlxc.init.cmd = /bin/app\nlxc.start.auto = 0\n"
	put(t, filepath.Join(root, "var/lib/lxc/web/config"), built)
	other := strings.ReplaceAll(built, "web", "elsewhere")
	put(t, filepath.Join(root, "var/lib/lxc/elsewhere/config"), other)
	hand := "lxc.uts.name = hand\nlxc.start.auto = 0\n"
	put(t, filepath.Join(root, "var/lib/lxc/hand/config"), hand)
	env := Env{Root: root, Node: plan.Plan{Name: "node01", LXC: &plan.LXC{Bridge: "lxcbr0", Address: "10.0.3.1/24", Network: "veth",
		Containers: []plan.Container{{Name: "web", IP: "10.0.3.10/24", MAC: "00:16:3e:00:00:10"}, {Name: "hand", IP: "10.0.3.11/24"}}}}, Log: (&lines{}).logf}
	for i := 0; i < 2; i++ { // the second run must change nothing
		for _, ct := range env.Node.LXC.Containers {
			if err := pinContainer(env, ct); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := strings.TrimSuffix(built, "lxc.start.auto = 0\n") + generated +
		"lxc.net.0.type = veth\nlxc.net.0.link = lxcbr0\nlxc.net.0.flags = up\nlxc.net.0.veth.pair = vc-web\nlxc.net.0.hwaddr = 00:16:3e:00:00:10\nlxc.net.0.ipv4.address = 10.0.3.10/24\nlxc.net.0.ipv4.gateway = 10.0.3.1\nlxc.start.auto = 1\n"
	if got := get(t, filepath.Join(root, "var/lib/lxc/web/config")); got != want {
		t.Errorf("built container's config:\n%s\nwant:\n%s", got, want)
	}
	if got := get(t, filepath.Join(root, "var/lib/lxc/elsewhere/config")); got != other {
		t.Errorf("another node's container changed:\n%s", got)
	}
	if got := get(t, filepath.Join(root, "var/lib/lxc/hand/config")); !strings.Contains(got, "lxc.start.auto = 0\n") || strings.Contains(got, "lxc.start.auto = 1") {
		t.Errorf("hand-made container's start.auto changed:\n%s", got)
	}
}

// TestPinContainerIPv6: a container with an ip6 gets its IPv6 address
// and the bridge's IPv6 address as gateway next to its IPv4 ones; one
// without gets none, and IPv6 lines a config had before (from an
// earlier plan, or by hand) go.
func TestPinContainerIPv6(t *testing.T) {
	head := generated + "lxc.net.0.type = veth\nlxc.net.0.link = lxcbr0\nlxc.net.0.flags = up\nlxc.net.0.veth.pair = vc-web\nlxc.net.0.hwaddr = 00:16:3e:00:00:10\nlxc.net.0.ipv4.address = 10.0.3.10/24\nlxc.net.0.ipv4.gateway = 10.0.3.1\n"
	for _, tc := range []struct {
		name, address6, ip6, want string
	}{
		{"pinned", "fd00:5::1/64", "fd00:5::10/64", head + "lxc.net.0.ipv6.address = fd00:5::10/64\nlxc.net.0.ipv6.gateway = fd00:5::1\n"},
		{"no ip6", "fd00:5::1/64", "", head},
		{"no address6", "", "", head},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			conf := filepath.Join(root, "var/lib/lxc/web/config")
			put(t, conf, "lxc.uts.name = web\nlxc.net.0.ipv6.address = fd00:9::9/64\nlxc.net.0.ipv6.gateway = fd00:9::1\n")
			ct := plan.Container{Name: "web", IP: "10.0.3.10/24", IP6: tc.ip6, MAC: "00:16:3e:00:00:10"}
			env := Env{Root: root, Log: (&lines{}).logf, Node: plan.Plan{Name: "node01", LXC: &plan.LXC{Bridge: "lxcbr0", Address: "10.0.3.1/24", Address6: tc.address6, Network: "veth",
				Containers: []plan.Container{ct}}}}
			if err := pinContainer(env, ct); err != nil {
				t.Fatal(err)
			}
			if got, want := get(t, conf), "lxc.uts.name = web\n"+tc.want; got != want {
				t.Errorf("container config:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// With a target, the script snapshots the containers' subvolume too and
// exports after; the node's key is made once and kept, and known_hosts
// holds only the target's keys.
func TestBackupTarget(t *testing.T) {
	b := &plan.Backup{OnCalendar: "daily", Cron: "0 0 * * *", Keep: 3, Subvolume: "/", Dir: "/.snapshots", Containers: true,
		Target: &plan.BackupTarget{Host: "backup@192.168.142.2", Port: 2222, Dir: "/srv/backup/n1", Keep: 30, HostKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB store"}}}
	root := t.TempDir()
	var logged []string
	env := Env{Root: root, Node: plan.Plan{Name: "n1", Backup: b}, Log: func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) }}
	if err := Backup(env); err != nil {
		t.Fatal(err)
	}
	script := get(t, filepath.Join(root, SnapshotScript))
	for _, want := range []string{
		`btrfs subvolume snapshot -r / "/.snapshots/root-$(date`,
		`btrfs subvolume snapshot -r /var/lib/lxc "/.snapshots/var-lib-lxc-$(date`,
		"ls -1d /.snapshots/var-lib-lxc-* 2>/dev/null | sort -r | tail -n +4 |",
		"/usr/sbin/nodeinit backup export || echo",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
	if got := get(t, filepath.Join(root, backup.KnownHostsFile)); got != "[192.168.142.2]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB\n" {
		t.Errorf("known_hosts = %q", got)
	}
	cfg, err := backup.LoadConfig(root)
	if err != nil || !reflect.DeepEqual(cfg, b) {
		t.Errorf("config read back = %+v, %v", cfg, err)
	}
	pub := get(t, filepath.Join(root, backup.KeyFile+".pub"))
	if !strings.HasPrefix(pub, "ssh-ed25519 ") || !strings.HasSuffix(pub, " backup@n1\n") {
		t.Errorf("public key %q", pub)
	}
	if err := Backup(env); err != nil {
		t.Fatal(err)
	}
	if again := get(t, filepath.Join(root, backup.KeyFile+".pub")); again != pub {
		t.Errorf("the key changed at the second boot")
	}
	made := 0
	for _, l := range logged {
		if strings.Contains(l, "made this node's SSH key") {
			made++
		}
	}
	if made != 1 || !strings.Contains(strings.Join(logged, "\n"), "exports to backup@192.168.142.2:/srv/backup/n1 as ssh-ed25519 ") {
		t.Errorf("console lines:\n%s", strings.Join(logged, "\n"))
	}
}

// A container the build placed gets the node's DNS servers in its
// resolv.conf unless its root has its own; a link in its root is never
// followed.
func TestContainerResolvConf(t *testing.T) {
	ours := generated + "search seed.lan\nnameserver 192.168.142.1\n"
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, rootfs, outside string)
		dns     []string
		want    string // resolv.conf afterwards; "" for missing
		wantErr string
	}{
		{name: "no etc", want: ours},
		{name: "empty file", setup: func(t *testing.T, rootfs, _ string) { put(t, filepath.Join(rootfs, "etc/resolv.conf"), "\n") }, want: ours},
		{name: "written before", setup: func(t *testing.T, rootfs, _ string) {
			put(t, filepath.Join(rootfs, "etc/resolv.conf"), generated+"nameserver 10.9.9.9\n")
		}, want: ours},
		{name: "the image's own", setup: func(t *testing.T, rootfs, _ string) {
			put(t, filepath.Join(rootfs, "etc/resolv.conf"), "nameserver 9.9.9.9\n")
		}, want: "nameserver 9.9.9.9\n"},
		{name: "symlink", setup: func(t *testing.T, rootfs, _ string) {
			put(t, filepath.Join(rootfs, "etc/x"), "")
			if err := os.Symlink("../run/systemd/resolve/stub-resolv.conf", filepath.Join(rootfs, "etc/resolv.conf")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "etc is a link out of the root", setup: func(t *testing.T, rootfs, outside string) {
			if err := os.MkdirAll(rootfs, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, filepath.Join(rootfs, "etc")); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "/var/lib/lxc/web/rootfs/etc is not a directory"},
		{name: "no DNS", dns: []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, outside := t.TempDir(), t.TempDir()
			rootfs := filepath.Join(root, "var/lib/lxc/web/rootfs")
			put(t, filepath.Join(root, "var/lib/lxc/web/config"), plan.AutostartMarker+"\nlxc.rootfs.path = dir:/var/lib/lxc/web/rootfs\n")
			if err := os.MkdirAll(rootfs, 0o755); err != nil {
				t.Fatal(err)
			}
			if tc.setup != nil {
				tc.setup(t, rootfs, outside)
			}
			dns := []string{"192.168.142.1"}
			if tc.dns != nil {
				dns = tc.dns
			}
			ct := plan.Container{Name: "web", IP: "10.0.3.10/24", MAC: "00:16:3e:00:00:10"}
			env := Env{Root: root, Log: (&lines{}).logf, Node: plan.Plan{Name: "node01", DNS: dns, Domain: "seed.lan",
				LXC: &plan.LXC{Bridge: "lxcbr0", Address: "10.0.3.1/24", Network: "veth", Containers: []plan.Container{ct}}}}
			err := pinContainer(env, ct)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %v, want %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Errorf("wrote %d files outside the container's root", len(ents))
			}
			got, err := os.ReadFile(filepath.Join(rootfs, "etc/resolv.conf"))
			if tc.want == "" {
				if err == nil {
					t.Errorf("resolv.conf written: %q", got)
				}
				return
			}
			if string(got) != tc.want {
				t.Errorf("resolv.conf %q (%v), want %q", got, err, tc.want)
			}
		})
	}
}
