package e2e

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/build/apt"
	"github.com/mkimage/mkimage/internal/build/deb"
	"github.com/mkimage/mkimage/internal/build/ocirootfs/ocitest"
	vmharness "github.com/mkimage/mkimage/internal/build/qemu"
	"github.com/mkimage/mkimage/internal/testenv"
	"github.com/mkimage/mkimage/internal/update/registry"
	"github.com/mkimage/mkimage/internal/update/registry/registrytest"
)

// debianCluster is one gateway node hosting container c1 on bridge ctbr0
// (not lxcbr0, which Debian's lxc-net would take over), container c3
// built from Debian packages, container c2, built with the image from an
// OCI image (the first %s: its reference), which serves "web" through
// haproxy and over i2p, and container edge, built from Debian packages,
// which runs the gateway's haproxy and i2pd in the node's place. Its
// snapshots go to a backup target, the test's sshd reached at 10.0.2.100
// through a QEMU guestfwd (then %s: the directory there, and its host key).
const debianCluster = `[cluster]
name = "deb"
domain = "deb.lan"

[network]
subnet = "10.0.2.0/24"
gateway = "10.0.2.2"
dns = ["10.0.2.3"]

[lxc]
bridge = "ctbr0"
address = "10.0.5.1/24"
address6 = "fd00:5::1/64"
lxcfs = true
network = "veth"

[[lxc.container]]
name = "c1"
node = "deb1"
ip = "10.0.5.10"
ip6 = "fd00:5::10"
mac = "00:16:3e:00:05:10"

[[lxc.container]]
name = "c3"
node = "deb1"
ip = "10.0.5.12"
mac = "00:16:3e:00:05:12"
rootfs = "debian:bookworm"
packages = ["busybox"]

[[lxc.container]]
name = "c2"
node = "deb1"
ip = "10.0.5.11"
mac = "00:16:3e:00:05:11"
rootfs = "oci:%s"

[[lxc.container]]
name = "edge"
node = "deb1"
rootfs = "debian:bookworm"
runs = ["haproxy", "i2pd"]

[[service]]
name = "web"
container = "c2"
port = 80
protocol = "http"
hosts = ["web.deb.lan"]
check_interval = "1s"
i2p = true

[backup]
schedule = "daily 04:00"
keep = 3

[backup.target]
host = "root@10.0.2.100"
dir = "%s"
keep = 2
host_keys = ["%s"]

[[node]]
name = "deb1"
mac = "52:54:00:de:b0:01"
ip = "10.0.2.15"
role = "gateway"
`

// debianReport runs after lxc at every boot and prints what the node
// sees on the console, each line "E2E: ..."; after the first boot it
// reboots (QEMU runs with -no-reboot, so the VM exits and the test boots
// the same disk again).
const debianReport = `#!/bin/sh
exec >/dev/console 2>&1
n=$(cat /var/lib/e2e-boots 2>/dev/null || echo 0); n=$((n + 1)); echo $n >/var/lib/e2e-boots
echo "E2E: boot $n"
# The snapshot timer's run at boot (Persistent=true), a full export under
# emulation, is stopped: the backup steps below are the test's, and the
# checks before them are timed.
systemctl stop nodeinit-snapshot.timer nodeinit-snapshot.service
echo "E2E: packages $(dpkg-query -W -f '${Status}\n' | grep -c '^install ok installed$') installed of $(dpkg-query -W -f '.\n' | wc -l)"
echo "E2E: configured $(cat /var/lib/mkimage/debroot/configured)"
echo "E2E: root password $(passwd -S root | cut -d' ' -f2)"
lxc-checkconfig 2>&1 | sed 's/\x1b\[[0-9;]*m//g' | grep -E ': (enabled|missing|required|disabled)' | sed 's/^/E2E-cc: /'
for i in $(seq 60); do
	[ "$(lxc-info -n c1 -sH 2>/dev/null)" = RUNNING ] && [ -n "$(lxc-info -n c1 -iH 2>/dev/null)" ] && break
	sleep 1
done
echo "E2E: c1 state $(lxc-info -n c1 -sH 2>&1) ip $(lxc-info -n c1 -iH 2>&1 | tr '\n' ' ')"
echo "E2E: c1 mac $(lxc-attach -n c1 -- /bin/busybox cat /sys/class/net/eth0/address 2>&1)"
if ping -c 2 -W 5 10.0.5.10 >/dev/null 2>&1; then echo "E2E: ping c1 ok"; else echo "E2E: ping c1 failed"; ip -br addr; fi
if ping -6 -c 2 -W 5 fd00:5::10 >/dev/null 2>&1; then echo "E2E: ping6 c1 ok"; else echo "E2E: ping6 c1 failed"; ip -br -6 addr; lxc-attach -n c1 -- /bin/busybox ip -6 addr 2>&1 | sed 's/^/E2E-c1-ip6: /'; fi
# c3: built from Debian packages, configured by its start hook at its
# first start, then booted by its own systemd.
for i in $(seq 120); do [ "$(lxc-info -n c3 -sH 2>/dev/null)" = RUNNING ] && break; sleep 1; done
echo "E2E: c3 state $(lxc-info -n c3 -sH 2>&1) label $(cat /proc/$(lxc-info -n c3 -pH)/attr/current 2>&1)"
echo "E2E: c3 configured $(cat /var/lib/lxc/c3/rootfs/var/lib/mkimage/debroot/configured 2>&1)"
echo "E2E: c3 init $(lxc-attach -n c3 -- cat /proc/1/comm 2>&1) hostname $(lxc-attach -n c3 -- cat /etc/hostname 2>&1)"
if ping -c 2 -W 5 10.0.5.12 >/dev/null 2>&1; then echo "E2E: ping c3 ok"; else echo "E2E: ping c3 failed"; fi
echo "E2E: c3 resolv.conf $(lxc-attach -n c3 -- cat /etc/resolv.conf 2>&1 | grep -v '^#' | tr '\n' ' ')"
[ "$(lxc-info -n c3 -sH 2>/dev/null)" = RUNNING ] || lxc-start -n c3 -F -l DEBUG -o /dev/stdout 2>&1 | tail -n 30 | sed 's/^/E2E-c3: /'
echo "E2E: apparmor $(cat /sys/module/apparmor/parameters/enabled 2>&1) lsm $(cat /sys/kernel/security/lsm 2>&1)"
echo "E2E: c1 label $(cat /proc/$(lxc-info -n c1 -pH)/attr/current 2>&1)"
echo "E2E: c1 lxcfs mounts $(lxc-attach -n c1 -- /bin/busybox cat /proc/mounts 2>&1 | grep -c lxcfs)"
# A container made the Debian way, with LXC's own busybox template.
[ -d /var/lib/lxc/bb ] || lxc-create -n bb -t busybox >/tmp/e2e-bb 2>&1 || sed 's/^/E2E-bb: /' /tmp/e2e-bb
if lxc-start -n bb >/tmp/e2e-bb 2>&1 && lxc-wait -n bb -s RUNNING -t 30; then
	echo "E2E: bb state $(lxc-info -n bb -sH) label $(cat /proc/$(lxc-info -n bb -pH)/attr/current 2>&1)"
	lxc-stop -n bb -k
else
	echo "E2E: bb failed to start"; sed 's/^/E2E-bb: /' /tmp/e2e-bb
	lxc-start -n bb -F -l DEBUG -o /dev/stdout 2>&1 | tail -n 20 | sed 's/^/E2E-bb: /'
fi
# c2: built from its OCI image, serving web through haproxy and i2p.
echo "E2E: c2 state $(lxc-info -n c2 -sH 2>&1) label $(cat /proc/$(lxc-info -n c2 -pH)/attr/current 2>&1)"
# get HOST IP PORT PATH: an HTTP/1.0 request through bash's /dev/tcp
# (bash is Essential), the whole response on stdout. The request goes out
# in one write (cat of a file): bash's printf writes line by line, and
# i2pd 2.45's console parses only a request that arrives in one read (it
# overwrites its buffer on the next), so a split request is never answered.
get() {
	timeout 10 bash -c 'req=$(mktemp) || exit
		printf "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" "$3" "$0" >"$req"
		exec 3<>"/dev/tcp/$1/$2" && cat "$req" >&3; rc=$?; rm -f "$req"
		[ $rc = 0 ] && cat <&3' "$@" 2>&1 | tr -d '\r'
}
# within SECONDS STEP CMD...: runs CMD every STEP seconds until it
# succeeds or SECONDS have passed, and sets waited to the seconds it
# took. Bounded by the clock, not by a count of tries: under a loaded
# host one try can take seconds.
within() {
	limit=$1 step=$2 t0=$(date +%s)
	shift 2
	until "$@"; do
		[ $(($(date +%s) - t0)) -ge "$limit" ] && break
		sleep "$step"
	done
	waited=$(($(date +%s) - t0))
}
echo "E2E: c2 direct $(get c2 10.0.5.11 80 / | tail -n 1)"
# edge: runs the gateway's haproxy and i2pd, confined, in the node's
# network; its packages are configured at its first start.
edge_running() { [ "$(lxc-info -n edge -sH 2>/dev/null)" = RUNNING ]; }
within 600 2 edge_running
pid=$(lxc-info -n edge -pH 2>/dev/null)
net=own; [ -n "$pid" ] && [ "$(readlink /proc/1/ns/net)" = "$(readlink /proc/$pid/ns/net)" ] && net=shared
echo "E2E: edge state $(lxc-info -n edge -sH 2>&1) after ${waited}s label $(cat /proc/$pid/attr/current 2>&1) net $net"
[ "$(lxc-info -n edge -sH 2>/dev/null)" = RUNNING ] || lxc-start -n edge -F -l DEBUG -o /dev/stdout 2>&1 | tail -n 30 | sed 's/^/E2E-edge: /'
# labels DAEMON: the AppArmor labels of DAEMON's processes, on the node.
labels() {
	for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = "$1" ] && cut -d' ' -f1 $p/attr/current 2>/dev/null; done | sort -u | tr '\n' ' '
}
web_up() {
	page=$(get web.deb.lan 127.0.0.1 80 /)
	case $page in *"hello from c2"*) return 0 ;; esac
	return 1
}
within 90 1 web_up
echo "E2E: web via haproxy $(echo "$page" | tail -n 1)"
[ -n "$page" ] && echo "$page" | head -n 3 | sed 's/^/E2E-web: /'
echo "E2E: unknown host via haproxy status $(get nope.deb.lan 127.0.0.1 80 / | head -n 1 | cut -d' ' -f2)"
echo "E2E: haproxy node $(systemctl is-active haproxy) edge $(lxc-attach -n edge -- systemctl is-active haproxy 2>&1)"
echo "E2E: haproxy processes $(labels haproxy)"
case $page in *"hello from c2"*) ;; *) lxc-attach -n edge -- journalctl -u haproxy -n 15 --no-pager 2>&1 | sed 's/^/E2E-haproxy: /' ;; esac
if grep -q ' /var/lib/lxcfs fuse.lxcfs ' /proc/mounts; then echo "E2E: lxcfs mounted"; else echo "E2E: lxcfs not mounted"; systemctl status lxcfs --no-pager -l 2>&1 | tail -n 12 | sed 's/^/E2E-lxcfs: /'; ls -l /dev/fuse 2>&1 | sed 's/^/E2E-lxcfs: /'; fi
# The native btrfs writer's filesystem, read-write under the node's own
# kernel and btrfs-progs: write, snapshot the root subvolume, scrub.
echo "boot $n" >/root/e2e-rw && sync
if btrfs subvolume snapshot -r / /.snapshots/e2e-$n >/dev/null 2>&1 && [ -r /.snapshots/e2e-$n/etc/hostname ]; then echo "E2E: btrfs snapshot ok"; else echo "E2E: btrfs snapshot failed"; fi
if btrfs scrub start -B / >/tmp/e2e-scrub 2>&1 && grep -q 'no errors found' /tmp/e2e-scrub; then echo "E2E: btrfs scrub ok"; else echo "E2E: btrfs scrub failed"; sed 's/^/E2E-scrub: /' /tmp/e2e-scrub; fi
echo "E2E: btrfs kernel complaints $(dmesg | grep -c -E 'BTRFS (critical|error)|corrupt')"
if [ $n = 1 ]; then
	# Backup export: a run killed a few seconds into the first (full)
	# export, as a power cut would; a whole export; a small change and an
	# incremental one; a deleted file brought back by restore.
	echo "deleted after the first snapshot" >/root/e2e-gone
	# A btrfs process while ssh runs: the export's btrfs send (the
	# snapshots are taken and pruned before ssh starts). One grep a
	# check: a fork per process is seconds under emulation.
	sending() { grep -qsx btrfs /proc/[0-9]*/comm && grep -qsx ssh /proc/[0-9]*/comm; }
	# Its own process group (setsid), killed whole two seconds into the
	# first btrfs send.
	setsid /usr/local/sbin/nodeinit-snapshot &
	pid=$!
	within 120 0.2 sending
	sleep 2
	bash -c 'kill -KILL -- "-$1"' kill "$pid" # dash's kill takes no process group
	wait $pid
	echo "E2E: backup cut rc $? after $(($(date +%s) - t0))s"
	/usr/sbin/nodeinit backup export
	echo "E2E: backup export 1 rc $?"
	rm /root/e2e-gone
	echo "small change" >/root/e2e-small
	sleep 1
	/usr/local/sbin/nodeinit-snapshot
	echo "E2E: backup export 2 $(cat /var/lib/mkimage/backup/last-export | cut -d' ' -f2-)"
	/usr/sbin/nodeinit backup list | sed 's/^/E2E-list: /'
	first=$(ls /.snapshots | grep '^root-' | head -n 1)
	if r=$(/usr/sbin/nodeinit backup restore "$first"); then
		echo "E2E: restored $first: $(cat "$r/root/e2e-gone" 2>&1) ro $(btrfs property get -ts "$r" ro 2>&1)"
	else
		echo "E2E: restore of $first failed"
		df -h / | sed 's/^/E2E-df: /'
	fi
	# One container back as the newest export had it, restarted.
	echo broken >/var/lib/lxc/c1/rootfs/etc/hostname
	/usr/sbin/nodeinit backup restore-container c1
	echo "E2E: c1 restored hostname $(cat /var/lib/lxc/c1/rootfs/etc/hostname) state $(lxc-info -n c1 -sH 2>&1)"
fi
# i2pd's web console (loopback, Debian's default) lists the destinations
# it runs: the tunnel's, from the keys nodeinit made. Last: edge's i2pd
# starts with the container's systemd, minutes after the report begins.
i2pd_up() {
	dests=$(get 127.0.0.1 127.0.0.1 7070 '/?page=local_destinations' | grep -o '[a-z2-7]\{52\}\.b32\.i2p' | sort -u | tr '\n' ' ')
	[ -n "$dests" ]
}
within 600 2 i2pd_up
echo "E2E: i2pd waited ${waited}s"
echo "E2E: i2pd node $(systemctl is-active i2pd) edge $(lxc-attach -n edge -- systemctl is-active i2pd 2>&1) destinations $dests"
echo "E2E: i2pd processes $(labels i2pd)"
echo "E2E: i2p key owner $(lxc-attach -n edge -- stat -c '%U %a' /var/lib/i2pd/mkimage-web.dat 2>&1)"
if [ -z "$dests" ]; then
	lxc-attach -n edge -- journalctl -u i2pd -n 15 --no-pager 2>&1 | sed 's/^/E2E-i2pd: /'
	tail -n 40 /var/lib/lxc/edge/rootfs/var/log/i2pd/i2pd.log 2>&1 | sed 's/^/E2E-i2pd-log: /'
	top -b -n 1 2>/dev/null | head -n 15 | sed 's/^/E2E-top: /'
	get 127.0.0.1 127.0.0.1 7070 / | head -n 5 | sed 's/^/E2E-i2pd: /'
	grep -v '^#' /var/lib/lxc/edge/rootfs/etc/i2pd/i2pd.conf | grep -A3 '^\[http\]' | sed 's/^/E2E-i2pd: /'
fi
echo "E2E: i2p addresses $(cat /var/lib/mkimage/i2p-addresses 2>&1 | tr '\n' ' ')"
echo "E2E: done boot $n"
[ $n = 1 ] && systemctl reboot
exit 0
`

const debianReportUnit = `[Unit]
Description=e2e report
After=lxc.service lxcfs.service systemd-networkd.service multi-user.target
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/e2e-report
[Install]
WantedBy=multi-user.target
`

// c1Config is the container: busybox from the node, bind-mounted into an
// empty root, started at boot, confined by LXC's generated AppArmor
// profile (what lxc-create writes from Debian's default.conf); nodeinit
// pins its network (veth on ctbr0, IP and MAC from the cluster config).
const c1Config = `lxc.uts.name = c1
lxc.rootfs.path = dir:/var/lib/lxc/c1/rootfs
lxc.include = /usr/share/lxc/config/common.conf
lxc.apparmor.profile = generated
lxc.mount.entry = /usr/bin/busybox bin/busybox none bind,ro,create=file 0 0
lxc.init.cmd = /bin/busybox sleep 2147483647
lxc.start.auto = 1
`

func debianOverlay(t *testing.T) string {
	t.Helper()
	dir := systemdOverlay(t, "e2e-report.service", map[string]overlayFile{
		"usr/local/sbin/e2e-report":             {debianReport, 0o755},
		"etc/systemd/system/e2e-report.service": {debianReportUnit, 0o644},
		"var/lib/lxc/c1/config":                 {c1Config, 0o644},
		"var/lib/lxc/c1/rootfs/etc/hostname":    {"c1\n", 0o644},
		"etc/default/lxc-net":                   {"USE_LXC_BRIDGE=\"false\"\n", 0o644},
	})
	for _, d := range []string{"bin", "dev", "proc", "sys", "tmp", "run"} {
		if err := os.MkdirAll(filepath.Join(dir, "var/lib/lxc/c1/rootfs", d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestDebianUnknownPackage: a package name the index does not have is
// an error naming it, and no image is written.
func TestDebianUnknownPackage(t *testing.T) {
	testenv.Short(t)
	testenv.NeedTools(t, "apt-get")
	img := filepath.Join(t.TempDir(), "node.img")
	_, errs, err := run(t, nil, "--board", "qemu-virt", "--rootfs", "debian", "--packages", "no-such-package-e2e", "-o", img)
	if err == nil {
		t.Fatal("build with an unknown package succeeded")
	}
	if !strings.Contains(errs, `"no-such-package-e2e"`) || !strings.Contains(errs, "not in the arm64 package index") {
		t.Errorf("error does not name the package:\n%s", errs)
	}
	if ents, _ := os.ReadDir(filepath.Dir(img)); len(ents) != 0 {
		t.Errorf("a failed build left %v", ents)
	}
}

// TestDebianBoot builds the Debian root (node set + ping + busybox for
// the container) with a cluster config, boots it under QEMU: first boot
// configures every package, lxc-checkconfig finds the kernel features,
// container c1 autostarts on the bridge with its pinned IP and MAC and
// answers ping, lxcfs is mounted; and all of it again after a reboot.
func TestDebianBoot(t *testing.T) {
	needQEMU(t)
	dir := t.TempDir()
	// The backup target: the test's sshd and a btrfs of its own.
	srv := testenv.StartSSHD(t, "127.0.0.1")
	// Room for two exports of the root and of the containers (c2, c3
	// and edge's roots: over 1 GiB).
	backups := filepath.Join(testenv.ScratchBtrfsSize(t, 4<<30), "backups")
	if err := os.Mkdir(backups, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "cluster.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(debianCluster, webImage(t), backups, srv.HostKey)), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "node.img")
	start := time.Now()
	mustRun(t, "--board", "qemu-virt", "--rootfs", "debian", "--packages", "iputils-ping,busybox-static,i2pd",
		"--config", cfg, "--overlay", debianOverlay(t), "-o", img, "-q")
	t.Logf("build: %v", time.Since(start).Round(time.Second))
	disk := filepath.Join(dir, "disk.img")
	// Room for a restored root beside the root (first boot grows the
	// filesystem to the disk).
	if err := vmharness.CopyImage(img, disk, 4<<30); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	// Isolated: i2pd must not reach the real i2p network from a test.
	opt := vmharness.Options{Disk: disk, MemoryMiB: 2048, SMP: 2, MAC: "52:54:00:de:b0:01", Console: logf, Isolated: true,
		GuestForward: []string{"tcp:10.0.2.100:22-cmd:" + srv.InetdCommand()}}
	var i2pAddr string
	// Limits against a hang, not speed goals: boot 1 took 15 min here
	// alone and 22.5 min in CI beside the other packages' tests; with
	// container edge, 36 min here on a slow day.
	for boot, limit := range []time.Duration{55 * time.Minute, 15 * time.Minute} {
		boot++
		bootStart := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		vm, err := vmharness.Start(ctx, opt)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		if boot == 1 {
			// The operator's step: the key the node made and printed goes
			// into the target's authorized_keys.
			if _, err := vm.Console.Expect(ctx, " backup@deb1"); err != nil {
				vm.Kill()
				cancel()
				t.Fatalf("boot 1: the node printed no backup key: %v\nconsole:\n%s", err, strings.Join(vm.Console.Tail(40), "\n"))
			}
			m := regexp.MustCompile(`nodeinit: backup: exports to root@10\.0\.2\.100:\S+ as (ssh-ed25519 \S+ backup@deb1)`).FindStringSubmatch(vm.Console.String())
			if m == nil {
				vm.Kill()
				cancel()
				t.Fatalf("boot 1: no backup key line:\n%s", strings.Join(vm.Console.Tail(40), "\n"))
			}
			if err := srv.Authorize(m[1]); err != nil {
				t.Fatal(err)
			}
		}
		out, err := vm.Console.Expect(ctx, fmt.Sprintf("E2E: done boot %d", boot))
		if err != nil {
			vm.Kill()
			cancel()
			t.Fatalf("boot %d: %v\nconsole:\n%s", boot, err, strings.Join(vm.Console.Tail(80), "\n"))
		}
		t.Logf("boot %d: report after %v", boot, time.Since(bootStart).Round(time.Second))
		addr := checkDebianReport(t, boot, vm.Console.String())
		if boot == 2 && addr != i2pAddr {
			t.Errorf("boot 2: web's i2p address %q, boot 1 had %q: the keys must stay", addr, i2pAddr)
		}
		i2pAddr = addr
		_ = out
		if boot == 1 {
			checkBackup(t, vm.Console.String(), filepath.Join(backups, "deb1"))
			select { // the node reboots; -no-reboot makes QEMU exit
			case <-vm.Done():
			case <-ctx.Done():
				t.Errorf("boot 1: the node did not reboot")
				vm.Kill()
			}
		} else {
			vm.Kill()
		}
		cancel()
	}
}

// webImage pushes c2's image to a registry on loopback (Debian's
// docker-registry) and returns its reference: Debian's arm64
// busybox-static as the only program, serving /www over HTTP.
func webImage(t *testing.T) string {
	t.Helper()
	cache, err := apt.New(io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	got, err := cache.Fetch(context.Background(), "busybox-static")
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := deb.Open(got[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	var busybox []byte
	if err := pkg.Data(func(h *tar.Header, r io.Reader) error {
		if path.Clean(h.Name) == "bin/busybox" {
			busybox, err = io.ReadAll(r)
		}
		return err
	}); err != nil || busybox == nil {
		t.Fatalf("busybox from %s: %v", got[0].Path, err)
	}
	entries := []ocitest.Entry{{Name: "bin/busybox", Type: tar.TypeReg, Data: string(busybox), Mode: 0o755},
		{Name: "www/index.html", Type: tar.TypeReg, Data: "hello from c2\n"}}
	for _, d := range []string{"dev", "proc", "sys", "tmp", "run"} {
		entries = append(entries, ocitest.Entry{Name: d + "/", Type: tar.TypeDir, Mode: 0o755})
	}
	reg := registrytest.Start(t, registrytest.Options{})
	ref, err := registry.ParseRef(reg.Host() + "/e2e/web:v1")
	if err != nil {
		t.Fatal(err)
	}
	ocitest.PushArm64(t, registry.New(nil, nil, false), ref, entries, []string{"/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"})
	return ref.String()
}

// checkDebianReport judges one boot's report and returns the i2p address
// the node made for web.
func checkDebianReport(t *testing.T, boot int, console string) string {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(console, "\n") {
		l = strings.TrimRight(l, "\r")
		if i := strings.Index(l, "E2E"); i >= 0 {
			lines = append(lines, l[i:])
		}
	}
	report := strings.Join(lines, "\n")
	t.Logf("boot %d report:\n%s", boot, report)
	if m := regexp.MustCompile(`dpkg-configure: (\d+) of (\d+) packages installed ok in (\d+) s`).FindStringSubmatch(console); m != nil {
		t.Logf("first-boot configuration: %s packages in %s s", m[1], m[3])
	}
	m := regexp.MustCompile(`E2E: packages (\d+) installed of (\d+)`).FindStringSubmatch(report)
	if m == nil || m[1] != m[2] || m[1] == "0" {
		t.Errorf("boot %d: not every package is installed: %v", boot, m)
	}
	for _, want := range []string{
		"E2E: root password L",
		"E2E: c1 state RUNNING ip 10.0.5.10",
		"E2E: c1 mac 00:16:3e:00:05:10",
		"E2E: ping c1 ok",
		"E2E: ping6 c1 ok", // its pinned ip6, on the bridge's address6
		// c3 was built from Debian packages, configured at its first
		// start by its hook, and runs its own systemd, confined.
		"E2E: c3 state RUNNING label lxc-c3_</var/lib/lxc>//&:lxc-c3_<-var-lib-lxc>:unconfined (enforce)",
		"E2E: c3 init systemd hostname c3",
		"E2E: ping c3 ok",
		// Its address is pinned, so nodeinit gave it the node's DNS.
		"E2E: c3 resolv.conf search deb.lan nameserver 10.0.2.3 ",
		"E2E: lxcfs mounted",
		"E2E: apparmor Y",
		// Confined by the profile LXC generated for it, and lxcfs was
		// mounted before the container started at boot.
		// (Stacked: the profile LXC generated for the container, and
		// the container's own AppArmor namespace, empty.)
		"E2E: c1 label lxc-c1_</var/lib/lxc>//&:lxc-c1_<-var-lib-lxc>:unconfined (enforce)",
		"E2E: bb state RUNNING label lxc-bb_</var/lib/lxc>//&:lxc-bb_<-var-lib-lxc>:unconfined (enforce)",
		// c2 came with the image from its OCI image and serves web.
		"E2E: c2 state RUNNING label lxc-c2_</var/lib/lxc>//&:lxc-c2_<-var-lib-lxc>:unconfined (enforce)",
		"E2E: c2 direct hello from c2",
		"E2E: web via haproxy hello from c2",
		"E2E: unknown host via haproxy status 503",
		// edge runs the gateway's haproxy and i2pd in the node's place:
		// confined by its own profile, in the node's network namespace,
		// and the node's own copies (installed) do not start.
		"E2E: edge state RUNNING after ",
		" label lxc-edge_</var/lib/lxc>//&:lxc-edge_<-var-lib-lxc>:unconfined (enforce) net shared",
		"E2E: haproxy node inactive edge active",
		"E2E: haproxy processes lxc-edge_</var/lib/lxc>//&:lxc-edge_<-var-lib-lxc>:unconfined \n",
		"E2E: i2pd processes lxc-edge_</var/lib/lxc>//&:lxc-edge_<-var-lib-lxc>:unconfined \n",
		// made by nodeinit before i2pd's user existed, given to it by
		// the unit's drop-in at i2pd's start.
		"E2E: i2p key owner i2pd 600",
		"E2E: btrfs snapshot ok",
		"E2E: btrfs scrub ok",
		"E2E: btrfs kernel complaints 0",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("boot %d: no %q in the report", boot, want)
		}
	}
	if m := regexp.MustCompile(`E2E: c3 configured (\d+) (\d+) \d+`).FindStringSubmatch(report); m == nil || m[1] != m[2] {
		t.Errorf("boot %d: c3's packages were not all configured at its first start: %v", boot, m)
	}
	if m := regexp.MustCompile(`E2E: c1 lxcfs mounts (\d+)`).FindStringSubmatch(report); m == nil || m[1] == "0" {
		t.Errorf("boot %d: c1 has no lxcfs mount in its /proc/mounts: %v", boot, m)
	}
	for _, want := range []string{
		"nodeinit: policy: haproxy.cfg: 1 services in container edge",
		"nodeinit: policy: i2p: 1 server, 0 client tunnels in container edge",
	} {
		if !strings.Contains(console, want) {
			t.Errorf("boot %d: no %q on the console", boot, want)
		}
	}
	// The three containers with an address are pinned by the
	// anti-spoofing table (edge has none: it is in the node's network).
	if !strings.Contains(console, "nftables table bridge nodeinit: 3 containers pinned") {
		t.Errorf("boot %d: no anti-spoofing report for 3 containers on the console", boot)
	}
	// The address nodeinit made for web is the one i2pd loaded and the
	// one in the file the build host collects.
	var addr string
	if m := regexp.MustCompile(`nodeinit: i2p: service web reachable at ([a-z2-7]{52}\.b32\.i2p)`).FindStringSubmatch(console); m == nil {
		t.Errorf("boot %d: nodeinit did not print web's i2p address", boot)
	} else {
		addr = m[1]
		if !strings.Contains(report, "E2E: i2p addresses web "+addr) {
			t.Errorf("boot %d: the addresses file does not have web at %s", boot, addr)
		}
		if m := regexp.MustCompile(`E2E: i2pd node inactive edge active destinations (.*)`).FindStringSubmatch(report); m == nil || !strings.Contains(m[1], addr) {
			t.Errorf("boot %d: i2pd does not run web's destination %s: %v", boot, addr, m)
		}
	}
	for _, feature := range []string{"Namespaces", "Utsname namespace", "Ipc namespace", "Pid namespace", "User namespace", "Network namespace", "Cgroups", "Cgroup namespace", "Veth pair device", "Bridges"} {
		re := regexp.MustCompile(`E2E-cc: ` + regexp.QuoteMeta(feature) + `: (\w+)`)
		if m := re.FindStringSubmatch(report); m == nil || m[1] != "enabled" {
			t.Errorf("boot %d: lxc-checkconfig: %s: %v", boot, feature, m)
		}
	}
	return addr
}

// checkBackup checks boot 1's backup export from both sides: the node's
// report and console, and the target directory dir.
func checkBackup(t *testing.T, console, dir string) {
	t.Helper()
	for _, want := range []string{"E2E: backup export 1 rc 0", "E2E: backup export 2 ok", "E2E: c1 restored hostname c1 state RUNNING"} {
		if !strings.Contains(console, want) {
			t.Errorf("backup: no %q on the console", want)
		}
	}
	if !regexp.MustCompile(`E2E: restored root-\S+: deleted after the first snapshot ro ro=true`).MatchString(console) {
		t.Errorf("backup: the deleted file did not come back by restore")
	}
	// The root's first export is full, the second incremental and small.
	var full, incr int64
	for _, m := range regexp.MustCompile(`nodeinit: backup: sent root-\S+ \((full|incremental), (\d+) bytes`).FindAllStringSubmatch(console, -1) {
		n, _ := strconv.ParseInt(m[2], 10, 64)
		if m[1] == "full" {
			full = n
		} else {
			incr = n
		}
	}
	t.Logf("backup: root full %d bytes, incremental %d bytes", full, incr)
	if full == 0 || incr == 0 || incr*20 > full {
		t.Errorf("backup: root sent full %d bytes, then incremental %d bytes: want both, the second under 5%%", full, incr)
	}
	// The target holds complete snapshots only (received, read-only), of
	// the root and of the containers, the newest 2 of each (its keep).
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		show := testenv.Run(t, "btrfs", "subvolume", "show", filepath.Join(dir, e.Name()))
		if !regexp.MustCompile(`Received UUID:\s+[0-9a-f-]{36}`).MatchString(show) {
			t.Errorf("backup: target holds %s without a Received UUID (incomplete):\n%s", e.Name(), show)
		}
		count[strings.TrimRight(strings.TrimRight(e.Name(), "0123456789-"), "-")]++
	}
	if count["root"] != 2 || count["var-lib-lxc"] != 2 {
		t.Errorf("backup: target holds %v, want 2 root and 2 var-lib-lxc snapshots", count)
	}
}
