package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	qemuvm "github.com/mkimage/mkimage/internal/build/qemu"
	"github.com/mkimage/mkimage/internal/testenv"
	"github.com/mkimage/mkimage/internal/update"
)

// rollbackHooks are the boot hooks every version of the test's root
// runs, around the builder's 90-mkimage-check: the network (QEMU's user
// network), a report of what runs, then the node's own update command
// applying whatever the server offers as "current", the status, and a
// power-off so each boot is one QEMU run.
var rollbackHooks = map[string]string{
	"etc/boot.d/50-e2e-report": `#!/bin/sh
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
# As systemd does on a root's first boot: the node's id, made once.
[ -s /etc/machine-id ] || tr -d - </proc/sys/kernel/random/uuid >/etc/machine-id
echo "E2E-REPORT $(grep -o 'mkimage.version=[0-9a-f]*' /proc/cmdline) marker=$(cat /etc/e2e-marker) e2e.arg=$(grep -o 'e2e.arg=[a-z0-9]*' /proc/cmdline) machine-id=$(cat /etc/machine-id 2>/dev/null)"
`,
	"etc/boot.d/95-e2e-apply": `#!/bin/sh
/usr/sbin/nodeinit update apply --reboot && exit 0
echo "E2E-APPLY-REFUSED"
`,
	"etc/boot.d/99-e2e-done": `#!/bin/sh
/usr/sbin/nodeinit update status
echo E2E-DONE
poweroff
`,
}

// rollbackOverlay writes the test's overlay for one version: the hooks,
// a marker file, the bundle URL, and extra files.
func rollbackOverlay(t *testing.T, marker, url string, extra map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"etc/e2e-marker":         marker + "\n",
		"etc/mkimage/update-url": url + "\n",
		"etc/mkimage/status-url": "http://" + u.Host + "\n",
	}
	for p, s := range rollbackHooks {
		files[p] = s
	}
	for p, s := range extra {
		files[p] = s
	}
	for p, s := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(s, "#!") {
			mode = 0o755
		}
		if err := os.WriteFile(full, []byte(s), mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// freePort returns a TCP port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// serveBundles runs `mkimage serve DIR` (HTTP only in effect: DHCP off,
// TFTP on a spare port), taking the nodes' status reports, until the
// test ends; extra are more flags.
func serveBundles(t *testing.T, dir string, extra ...string) int {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command(mkimageBin, append([]string{"serve", dir, "--dhcp", "off", "--http-port", fmt.Sprint(port), "--tftp-port", fmt.Sprint(freePort(t)),
		"--status-dir", filepath.Join(t.TempDir(), "status")}, extra...)...)
	log := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		t.Logf("mkimage serve:\n%s", tail(log.String(), 30))
	})
	for range 100 {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return port
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("mkimage serve did not listen on %d:\n%s", port, log)
	return 0
}

// offer makes the server's "current" bundle the one in dir/name.
func offer(t *testing.T, dir, name string) {
	t.Helper()
	cur := filepath.Join(dir, "current")
	os.Remove(cur)
	if err := os.Symlink(name, cur); err != nil {
		t.Fatal(err)
	}
}

// bootOnce boots the card in place until QEMU exits (a reboot, a
// power-off or a panic's reboot: QEMU runs with -no-reboot) and returns
// the console.
func bootOnce(t *testing.T, disk string) string {
	t.Helper()
	log, _ := bootCutAt(t, disk, "")
	return log
}

// bootCutAt boots the card in place and kills QEMU (a power cut) as soon
// as the console shows line; it says whether it cut. A boot that ends
// first (a reboot, a power-off), or an empty line, is not cut.
func bootCutAt(t *testing.T, disk, line string) (string, bool) {
	t.Helper()
	o, _, err := qemuvm.ImageOptions(disk, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	vm, err := qemuvm.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	cut := false
	if line != "" {
		_, err = vm.Console.Expect(ctx, line)
		cut = err == nil
	}
	if cut {
		vm.Kill()
	} else if werr := vm.Wait(); werr != nil || ctx.Err() != nil {
		t.Fatalf("the node did not reboot or power off in 5 minutes (%v), or qemu failed (%v):\n%s", ctx.Err(), werr, tail(vm.Console.String(), 60))
	}
	return vm.Console.String(), cut
}

var reportRE = regexp.MustCompile(`E2E-REPORT mkimage.version=([0-9a-f]{16}) marker=(\S*) e2e.arg=(\S*) machine-id=(\S*)`)

// report is what the root's report hook printed, or empty.
func report(log string) (version, marker, arg, machineID string) {
	m := reportRE.FindStringSubmatch(log)
	if m == nil {
		return
	}
	return m[1], m[2], m[3], m[4]
}

// TestUpdateRollback: a fleet's update cycle on one QEMU node, through
// U-Boot's counting boot script, with the node's own update command
// (`nodeinit update`, from the root) and bundles served by `mkimage
// serve`:
//   - v1 boots and applies v2 (an incremental stream: a changed file and
//     a changed kernel argument); the node reboots into v2, which passes
//     its checks and is committed, with the node's identity kept;
//   - v3's health check fails: three tries, each rebooting, then U-Boot
//     is back on v2, which records v3 as bad (with the check's reason)
//     and refuses it when offered again;
//   - v4 is installed through power cuts (QEMU killed during the
//     download, the receive, the live root and boot files), each time
//     the node is back on v2 and the next run resumes; a cut while
//     U-Boot counts; v4's root cannot start (its init exits: the kernel
//     panics, and panic= reboots): its tries, then v2 again, v4 bad;
//   - the node's signed status reports reach `mkimage serve
//     --status-dir`, and `mkimage update status` shows v2 good, v3 and
//     v4 bad;
//   - btrfs check is clean on the card after all of it.
func TestUpdateRollback(t *testing.T) {
	needQEMU(t)
	testenv.NeedTools(t, "btrfs")
	dir := t.TempDir()
	srv := filepath.Join(dir, "srv")
	if err := os.MkdirAll(srv, 0o755); err != nil {
		t.Fatal(err)
	}
	port := serveBundles(t, srv)
	url := fmt.Sprintf("http://10.0.2.2:%d/current/", port)
	key := filepath.Join(dir, "fleet")
	mustRun(t, "key", "generate", "-o", key)
	env := []string{"SOURCE_DATE_EPOCH=1700000000"}
	inputs := func(overlay string, extra ...string) []string {
		return append([]string{"--board", "qemu-virt", "--rootfs", "minimal", "--update-key", key + ".pub", "--overlay", overlay, "-q"}, extra...)
	}
	bundle := func(name string, epoch int, in []string, parent string) string {
		t.Helper()
		args := append([]string{"update", "--key", key, "-o", filepath.Join(srv, name)}, in...)
		if parent != "" {
			args = append(args, "--parent", filepath.Join(srv, parent))
		}
		if _, errs, err := run(t, []string{fmt.Sprintf("SOURCE_DATE_EPOCH=%d", epoch)}, args...); err != nil {
			t.Fatalf("update %s: %v\n%s", name, err, errs)
		}
		m, err := os.ReadFile(filepath.Join(srv, name, update.ManifestFile))
		if err != nil {
			t.Fatal(err)
		}
		return regexp.MustCompile(`"id": *"([0-9a-f]{16})"`).FindStringSubmatch(string(m))[1]
	}

	v1in := inputs(rollbackOverlay(t, "one", url, nil))
	img := filepath.Join(dir, "card.img")
	if _, errs, err := run(t, env, append(v1in, "-o", img)...); err != nil {
		t.Fatalf("build v1: %v\n%s", err, errs)
	}
	v1 := bundle("v1", 1700000000, v1in, "")
	v2 := bundle("v2", 1700000100, inputs(rollbackOverlay(t, "two", url, nil), "--append", "e2e.arg=two"), "v1")
	v3 := bundle("v3", 1700000200, inputs(rollbackOverlay(t, "three", url, map[string]string{
		"etc/mkimage/health.d/50-e2e-service": "#!/bin/sh\necho 'e2e: the service did not come up'\nexit 1\n",
	})), "v2")
	// v4 carries 24 MB that do not compress, so its root stream takes
	// seconds to download: long enough for a cut to land inside it.
	noise := make([]byte, 24<<20)
	rand.NewChaCha8([32]byte{4}).Read(noise)
	v4 := bundle("v4", 1700000300, inputs(rollbackOverlay(t, "four", url, map[string]string{
		"sbin/init":     "#!/bin/sh\necho 'e2e: this init exits'\nexit 1\n",
		"var/e2e-noise": string(noise),
	})), "v2")
	t.Logf("versions: v1 %s, v2 %s, v3 %s, v4 %s", v1, v2, v3, v4)
	for _, v := range []string{"v2", "v3"} {
		full, _ := os.Stat(filepath.Join(srv, v, "root.full"))
		parent := map[string]string{"v2": v1, "v3": v2}[v]
		incr, err := os.Stat(filepath.Join(srv, v, "root.from-"+parent))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: root.full %d bytes, incremental %d bytes", v, full.Size(), incr.Size())
		if incr.Size()*10 > full.Size() {
			t.Errorf("%s: the incremental stream (%d bytes) is not much smaller than the full one (%d)", v, incr.Size(), full.Size())
		}
	}

	// Boot 1: v1 takes v2 (incrementally) and reboots.
	offer(t, srv, "v2")
	log := bootOnce(t, img)
	id, marker, _, machineID := report(log)
	if id != v1 || marker != "one" || machineID == "" {
		t.Fatalf("boot 1 runs %q marker %q machine-id %q, want v1 %s:\n%s", id, marker, machineID, v1, tail(log, 40))
	}
	consoleHas(t, log,
		"nodeinit: update: running the good version "+v1,
		"nodeinit: update: version "+v2+": incremental root from "+v1,
		// Same kernel and initramfs as v1: copied on the card.
		"nodeinit: update: Image: the same as version "+v1+"'s, copied on the card",
		// The initramfs too, though v2 was built with another
		// SOURCE_DATE_EPOCH: its entries' times are fixed.
		"nodeinit: update: initrd.img: the same as version "+v1+"'s, copied on the card",
		"nodeinit: update: version "+v2+" installed",
		"nodeinit: update: rebooting",
	)

	// Boot 2: U-Boot tries v2; it passes its checks and is committed.
	log = bootOnce(t, img)
	id, marker, arg, mid := report(log)
	if id != v2 || marker != "two" || arg != "e2e.arg=two" {
		t.Fatalf("boot 2 runs %q marker %q %q, want v2 %s with e2e.arg=two:\n%s", id, marker, arg, v2, tail(log, 40))
	}
	if mid != machineID {
		t.Errorf("machine-id changed with the update: %q, was %q", mid, machineID)
	}
	consoleHas(t, log,
		"mkimage boot: state good "+v1+" try "+v2+" tries 3",
		"nodeinit: update: version "+v2+" passed its checks: committed",
		"E2E-DONE",
	)

	// Boot 3: v2 (good now) takes v3 and reboots.
	offer(t, srv, "v3")
	log = bootOnce(t, img)
	if id, _, _, _ := report(log); id != v2 {
		t.Fatalf("boot 3 runs %q, want the committed v2 %s:\n%s", id, v2, tail(log, 40))
	}
	consoleHas(t, log, "mkimage boot: state good "+v2+" try "+v2+" tries 0", "nodeinit: update: version "+v3+" installed")

	// Boots 4-6: v3 fails its check each time and reboots.
	for try := 1; try <= 3; try++ {
		log = bootOnce(t, img)
		if id, _, _, _ := report(log); id != v3 {
			t.Fatalf("try %d runs %q, want v3 %s:\n%s", try, id, v3, tail(log, 40))
		}
		consoleHas(t, log, "nodeinit: update: check 50-e2e-service: e2e: the service did not come up",
			"nodeinit: update: the version being tried failed its health checks: health check 50-e2e-service failed: exit status 1")
	}
	// Boot 7: back on v2, v3 recorded as bad and refused when offered.
	log = bootOnce(t, img)
	if id, _, _, _ := report(log); id != v2 {
		t.Fatalf("after v3's tries the node runs %q, want v2 %s:\n%s", id, v2, tail(log, 40))
	}
	consoleHas(t, log,
		"nodeinit: update: version "+v3+" failed: boot 3 of 3: health check 50-e2e-service failed: exit status 1 (e2e: the service did not come up); marked bad",
		"version is recorded as bad",
		"E2E-APPLY-REFUSED",
		"E2E-DONE",
	)

	// v2 takes v4, whose root cannot start, through power cuts: during
	// the download of its kernel, at its receive, while its live root
	// and boot files are written. Each time the node comes back on v2 and
	// the next run goes on where the cut one stopped.
	offer(t, srv, "v4")
	installed := false
	for i, at := range []string{
		"nodeinit: update: version " + v4 + ": downloading root.from-" + v2,
		"nodeinit: update: version " + v4 + ": btrfs receive",
		"nodeinit: update: version " + v4 + ": live/" + v4 + " made",
		"", "",
	} {
		log, cut := bootCutAt(t, img, at)
		if id, _, _, _ := report(log); id != v2 {
			t.Fatalf("boot %d of v4's install runs %q, want v2 %s:\n%s", i+1, id, v2, tail(log, 40))
		}
		if i == 0 && !cut {
			t.Fatalf("the node never downloaded v4's root:\n%s", tail(log, 40))
		}
		if strings.Contains(log, "nodeinit: update: version "+v4+" installed") {
			installed = true
			break
		}
	}
	if !installed {
		t.Fatal("v4 was never installed after the cuts")
	}
	// A cut while U-Boot counts v4's first try; then the tries, each a
	// panic that reboots (panic=), and back on v2.
	log, _ = bootCutAt(t, img, "mkimage boot: state good "+v2+" try "+v4)
	panics := 0
	for range 5 {
		log = bootOnce(t, img)
		if id, _, _, _ := report(log); id == v2 {
			break
		}
		consoleHas(t, log, "nodeinit: version: "+v4, "e2e: this init exits", "Kernel panic")
		panics++
	}
	if id, _, _, _ := report(log); id != v2 || panics < 2 || panics > 3 {
		t.Fatalf("after %d panics of v4 the node runs %q, want v2 %s after 2 or 3:\n%s", panics, id, v2, tail(log, 40))
	}
	consoleHas(t, log, "nodeinit: update: version "+v4+" failed: it did not pass its checks in 3 boots", "E2E-DONE")
	status := log[strings.LastIndex(log, "VERSION"):]
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(v2 + `\s+\S+ \S+ UTC\s+good, running`),
		regexp.MustCompile(v3 + `\s+\S+ \S+ UTC\s+bad\s+boot 3 of 3: health check 50-e2e-service failed`),
		regexp.MustCompile(v4 + `\s+\S+ \S+ UTC\s+bad\s+it did not pass its checks`),
	} {
		if !want.MatchString(status) {
			t.Errorf("status has no line matching %q:\n%s", want, status)
		}
	}

	// The build host's view, from the node's signed reports.
	st := mustRun(t, "update", "status", "--server", fmt.Sprintf("http://127.0.0.1:%d", port))
	if !regexp.MustCompile(`node-\S+\s+` + v2 + `\s+` + v2 + `\s+-\s+.*(` + v3 + `, ` + v4 + `|` + v4 + `, ` + v3 + `)`).MatchString(st) {
		t.Errorf("mkimage update status: want the node on v2 with v3 and v4 bad:\n%s", st)
	}

	out, err := exec.Command("btrfs", "check", "--readonly", extract(t, img, 2)).CombinedOutput()
	if err != nil {
		t.Errorf("btrfs check after the updates: %v\n%s", err, out)
	}
}
