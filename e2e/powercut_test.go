package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	qemuvm "github.com/mkimage/mkimage/internal/build/qemu"
	"github.com/mkimage/mkimage/internal/node/firstboot"
	"github.com/mkimage/mkimage/internal/node/policy"
	"github.com/mkimage/mkimage/internal/ondisk"
	"github.com/mkimage/mkimage/internal/testenv"
)

// powerCutTOML is the e2e cluster with what makes first boot and policy
// write every kind of file they have on a busybox root: a timezone, an
// authorized key, and a snapshot schedule (policy's files).
var powerCutTOML = strings.Replace(clusterTOML, "domain = \"e2e.lan\"\n", `domain = "e2e.lan"
timezone = "Etc/UTC"
ssh_authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl admin@e2e"]
`, 1) + `
[backup]
schedule = "daily 03:30"
keep = 3
`

// stepFiles are the files each first-boot step writes on the minimal root
// (internal/node/firstboot; network takes its ifupdown path there).
var stepFiles = map[string][]string{
	firstboot.StepMachineID:      {"etc/machine-id"},
	firstboot.StepSSHHostKeys:    {"etc/ssh/ssh_host_ed25519_key", "etc/ssh/ssh_host_ed25519_key.pub", "etc/ssh/ssh_host_ecdsa_key", "etc/ssh/ssh_host_ecdsa_key.pub"},
	firstboot.StepHostname:       {"etc/hostname"},
	firstboot.StepHosts:          {"etc/hosts"},
	firstboot.StepNetwork:        {"etc/network/interfaces", "etc/resolv.conf"},
	firstboot.StepAuthorizedKeys: {"root/.ssh/authorized_keys"},
	firstboot.StepTimezone:       {"etc/timezone"},
}

// policyFiles are what policy writes at every boot on a busybox root with a
// snapshot schedule.
var policyFiles = []string{policy.SnapshotScript, "etc/crontabs/root"}

// perNode files are random per node, so they are checked for validity (and
// kept across a cut once their step is recorded), not against the
// reference's bytes.
var perNode = map[string]bool{
	"etc/machine-id":                   true,
	"etc/ssh/ssh_host_ed25519_key":     true,
	"etc/ssh/ssh_host_ed25519_key.pub": true,
	"etc/ssh/ssh_host_ecdsa_key":       true,
	"etc/ssh/ssh_host_ecdsa_key.pub":   true,
	firstboot.StatePath:                true,
}

// TestPowerCut: power is cut (QEMU killed) at each first-boot step of a
// fresh card, after the partition grow, during the filesystem resize,
// while identity and host keys are written and during policy's files;
// the next boot converges on what an uninterrupted first boot leaves:
// the same hostname, partition and filesystem size, every step recorded,
// the same files with the same content (the per-node ones valid, and kept
// once their step was recorded), no file left empty, half-written or
// behind under a temporary name, and a clean btrfs check.
func TestPowerCut(t *testing.T) {
	needQEMU(t)
	testenv.NeedRoot(t) // loop mounts: the cut's log tree is replayed as the next boot would
	testenv.NeedTools(t, "btrfs", "losetup", "mount", "umount", "ssh-keygen")
	start := time.Now()
	dir := t.TempDir()
	if !strings.Contains(powerCutTOML, "timezone =") {
		t.Fatal("clusterTOML changed: the power-cut config no longer adds its [cluster] keys")
	}
	cfg := filepath.Join(dir, "cluster.toml")
	if err := os.WriteFile(cfg, []byte(powerCutTOML), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "node.img")
	mustRun(t, "--board", "qemu-virt", "--rootfs", "minimal", "-o", img, "-q", "--config", cfg, "--overlay", clusterOverlay(t))
	t.Logf("build: %v", time.Since(start).Round(100*time.Millisecond))

	// Files written at a boot are newer than this; the image's carry the
	// build's epoch.
	since := time.Now().Add(-2 * time.Second)
	refCard := clusterCard(t, img)
	refLog, refTimes := bootInPlace(t, refCard, routerMAC, "E2E-DONE", 0, "")
	refNode := parseNode(t, refLog)
	ref := inspectCard(t, refCard, since)
	checkReference(t, refLog, refNode, ref)
	t.Logf("reference: %s; root partition %d bytes, filesystem %d", identity(ref), ref.part.Size, ref.fsBytes)
	if t.Failed() {
		t.FailNow()
	}
	order := stepOrder(refLog)
	t.Logf("reference: steps %s; files written: %s", strings.Join(order, ", "), strings.Join(slices.Sorted(maps.Keys(ref.regular())), ", "))

	// A cut kills QEMU when the console shows from: at once, or, where
	// the point has no line of its own, at a random time within as long
	// as the reference took from there to the line to (and at the latest
	// when to shows).
	cuts := []struct{ name, from, to string }{
		{"after the partition grow", "nodeinit: firstboot: /dev/vda partition 2: ", ""},
		// The kernel says "resize device" once the resize has committed.
		{"during the filesystem resize", "nodeinit: firstboot: grow-partition done", "BTRFS info (device vda2): resize device"},
		{"while identity and host keys are written", "nodeinit: firstboot: node rtr (", "nodeinit: firstboot: network done"},
		{"during policy files", "nodeinit: cpufreq: ", "nodeinit: policy: applied"},
	}
	t.Run("cut", func(t *testing.T) {
		for _, c := range cuts {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				var delay time.Duration
				if c.to != "" {
					delay = rand.N(refTimes.between(t, c.from, c.to))
				}
				card := clusterCard(t, img)
				cutLog, _ := bootInPlace(t, card, routerMAC, c.from, delay, c.to)
				cut := inspectCard(t, card, since)
				t.Logf("killed %v after %q: %s; recorded: %s; root partition %d bytes, filesystem %d", delay, c.from,
					running(order, cut, cutLog), strings.Join(doneList(order, cut), ", "), cut.part.Size, cut.fsBytes)
				checkRecorded(t, ref, cut)

				log, n := bootCard(t, card, routerMAC)
				after := inspectCard(t, card, since)
				t.Logf("at the cut: %s; after the next boot: %s", identity(cut), identity(after))
				checkConverged(t, ref, refNode, cut, after, log, n)
			})
		}
	})
	t.Logf("TestPowerCut: %v", time.Since(start).Round(time.Second))
}

// bootInPlace boots disk itself and kills QEMU (a power cut for the
// guest) delay after the console shows line, or as soon as it shows by
// if that comes first; it returns the console and when each line came.
func bootInPlace(t *testing.T, disk, mac, line string, delay time.Duration, by string) (string, *lineTimes) {
	t.Helper()
	o, _, err := qemuvm.ImageOptions(disk, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	o.MAC = mac
	// The card takes 20 writes a second, a slow SD card: first boot's
	// writes and btrfs's commits (the resize's among them) last long
	// enough for a kill to land inside them, not only between them.
	// (hd0 is the drive qemu.Options.Args attaches.)
	o.Extra = append(o.Extra, "-set", "drive.hd0.throttling.iops-write=20")
	times := &lineTimes{start: time.Now()}
	o.Console = times
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	vm, err := qemuvm.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	_, err = vm.Console.Expect(ctx, line)
	if err == nil && delay > 0 {
		seen := make(chan struct{})
		if by != "" {
			go func() {
				vm.Console.Expect(ctx, by)
				close(seen)
			}()
		}
		select {
		case <-time.After(delay):
		case <-seen:
		case <-vm.Done():
		}
	}
	vm.Kill()
	if err != nil {
		t.Fatalf("waiting for %q: %v", line, err)
	}
	return vm.Console.String(), times
}

// lineTimes records when each console line came.
type lineTimes struct {
	mu    sync.Mutex
	start time.Time
	part  []byte
	lines []string
	at    []time.Duration
}

func (l *lineTimes) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Since(l.start)
	l.part = append(l.part, p...)
	for {
		i := bytes.IndexByte(l.part, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.lines = append(l.lines, string(l.part[:i]))
		l.at = append(l.at, now)
		l.part = l.part[i+1:]
	}
}

// between is the time from the first line holding from to the first
// line after it holding to.
func (l *lineTimes) between(t *testing.T, from, to string) time.Duration {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	i := slices.IndexFunc(l.lines, func(s string) bool { return strings.Contains(s, from) })
	if i >= 0 {
		if j := slices.IndexFunc(l.lines[i:], func(s string) bool { return strings.Contains(s, to) }); j >= 0 {
			return max(l.at[i+j]-l.at[i], time.Millisecond)
		}
	}
	t.Fatalf("the reference boot does not show %q and then %q", from, to)
	return 0
}

// cardState is a card's root as the next boot finds it: read from a copy
// of the disk, mounted so that the kernel replays btrfs's log tree.
type cardState struct {
	part    ondisk.Partition // the root partition
	fsBytes uint64           // the btrfs superblock's total_bytes
	files   map[string]bootFile
	state   firstboot.State
}

// btrfsTotalBytesAt is total_bytes in the btrfs superblock.
const btrfsTotalBytesAt = 0x70

// bootFile is an entry written at a boot.
type bootFile struct {
	mode fs.FileMode
	data []byte // a regular file's content, a symlink's target
}

// regular returns the regular files.
func (c cardState) regular() map[string]bootFile {
	m := map[string]bootFile{}
	for p, f := range c.files {
		if f.mode.IsRegular() {
			m[p] = f
		}
	}
	return m
}

// mountMu keeps one card mounted at a time: every card has the image's
// btrfs fsid, and the kernel mounts one filesystem per fsid.
var mountMu sync.Mutex

// inspectCard runs btrfs check on the card's root partition and reads
// its firstboot state and every entry changed since since.
func inspectCard(t *testing.T, card string, since time.Time) cardState {
	t.Helper()
	var c cardState
	f, err := os.Open(card)
	if err != nil {
		t.Fatal(err)
	}
	mbr, err := ondisk.ReadMBR(f)
	if err != nil {
		f.Close()
		t.Fatal(err)
	}
	for _, p := range mbr.Partitions {
		if b, ok, _ := ondisk.ProbeBtrfs(io.NewSectionReader(f, p.Start, p.Size)); ok && b.Label == "root" {
			c.part = p
			var n [8]byte
			if _, err := f.ReadAt(n[:], p.Start+ondisk.BtrfsSuperOffset+btrfsTotalBytesAt); err != nil {
				t.Fatal(err)
			}
			c.fsBytes = binary.LittleEndian.Uint64(n[:])
		}
	}
	f.Close()
	if c.part.Size == 0 {
		t.Fatalf("%s: no btrfs labelled root in %+v", card, mbr.Partitions)
	}
	cp := filepath.Join(t.TempDir(), "inspect.img")
	if err := qemuvm.CopyImage(card, cp, 0); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(cp)

	mountMu.Lock()
	defer mountMu.Unlock()
	loop := strings.TrimSpace(tool(t, "losetup", "--find", "--show", "--offset", strconv.FormatInt(c.part.Start, 10), "--sizelimit", strconv.FormatInt(c.part.Size, 10), cp))
	defer exec.Command("losetup", "-d", loop).Run()
	check := func(when string) {
		if out, err := exec.Command("btrfs", "check", "--readonly", loop).CombinedOutput(); err != nil {
			t.Errorf("btrfs check --readonly of the root %s: %v\n%s", when, err, out)
		}
	}
	check("as the boot left it")
	mnt := t.TempDir()
	tool(t, "mount", "-t", "btrfs", loop, mnt)
	c.files, err = filesSince(mnt, since)
	if out, uerr := exec.Command("umount", mnt).CombinedOutput(); uerr != nil {
		t.Fatalf("umount %s: %v\n%s", mnt, uerr, out)
	}
	if err != nil {
		t.Fatal(err)
	}
	check("once mounted (its log tree replayed)")
	if b, ok := c.files[firstboot.StatePath]; ok {
		if err := json.Unmarshal(b.data, &c.state); err != nil {
			t.Errorf("%s: %v\n%s", firstboot.StatePath, err, b.data)
		}
	}
	return c
}

// filesSince reads every entry under dir but directories changed since
// since, by path relative to dir.
func filesSince(dir string, since time.Time) (map[string]bootFile, error) {
	files := map[string]bootFile{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil || d.IsDir() || fi.ModTime().Before(since) {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		bf := bootFile{mode: fi.Mode()}
		switch {
		case fi.Mode().IsRegular():
			bf.data, err = os.ReadFile(p)
		case fi.Mode()&fs.ModeSymlink != 0:
			var target string
			target, err = os.Readlink(p)
			bf.data = []byte(target)
		}
		files[rel] = bf
		return err
	})
	return files, err
}

// checkReference checks what an uninterrupted first boot left, which the
// cuts are held to.
func checkReference(t *testing.T, log string, n clusterNode, ref cardState) {
	t.Helper()
	if n.Host != "rtr" {
		t.Errorf("reference hostname %q, want rtr", n.Host)
	}
	rootGrown(t, n)
	consoleHas(t, log, "nodeinit: first-boot: complete", "nodeinit: policy: applied for rtr")
	m := regexp.MustCompile(`nodeinit: first-boot: complete in \S+ \(([^)]*)\)`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("no first-boot: complete line:\n%s", tail(log, 40))
	}
	ran := strings.Split(m[1], ", ")
	if got := slices.Sorted(maps.Keys(ref.state.Done)); !slices.Equal(got, slices.Sorted(slices.Values(ran))) {
		t.Errorf("%s lists %q, the boot ran %q", firstboot.StatePath, got, ran)
	}
	want := slices.Concat(policyFiles, []string{firstboot.StatePath})
	for _, files := range stepFiles {
		want = append(want, files...)
	}
	for _, p := range want {
		if f, ok := ref.files[p]; !ok || !f.mode.IsRegular() || len(f.data) == 0 {
			t.Errorf("the reference boot did not write /%s (%v, %d bytes)", p, f.mode, len(f.data))
		}
	}
	checkPerNode(t, ref)
}

// checkRecorded: every step recorded before the cut has its files, whole.
func checkRecorded(t *testing.T, ref, cut cardState) {
	t.Helper()
	for step := range cut.state.Done {
		for _, p := range stepFiles[step] {
			f, ok := cut.files[p]
			switch {
			case !ok:
				t.Errorf("step %s recorded before the cut, but /%s is missing", step, p)
			case !perNode[p] && !bytes.Equal(f.data, ref.files[p].data):
				t.Errorf("step %s recorded before the cut, but /%s holds %q, not %q", step, p, f.data, ref.files[p].data)
			}
		}
	}
	checkPerNode(t, cut)
}

// checkConverged compares the card after the boot that followed the cut
// with the reference.
func checkConverged(t *testing.T, ref cardState, refNode clusterNode, cut, after cardState, log string, n clusterNode) {
	t.Helper()
	if n.Host != refNode.Host || n.Fwd != refNode.Fwd {
		t.Errorf("hostname %q ip_forward %q, the reference's %q and %q", n.Host, n.Fwd, refNode.Host, refNode.Fwd)
	}
	rootGrown(t, n)
	if after.part != ref.part || after.fsBytes != ref.fsBytes {
		t.Errorf("root partition %+v with a filesystem of %d bytes, the reference's %+v and %d", after.part, after.fsBytes, ref.part, ref.fsBytes)
	}
	if strings.Contains(log, "first-boot: incomplete") || strings.Contains(log, "differ from the plan") {
		t.Errorf("the boot after the cut did not complete:\n%s", tail(log, 40))
	}
	consoleHas(t, log, "nodeinit: policy: applied for rtr", "nodeinit: hostname: rtr", "rcS: minimal root up")
	if got, want := slices.Sorted(maps.Keys(after.state.Done)), slices.Sorted(maps.Keys(ref.state.Done)); !slices.Equal(got, want) {
		t.Errorf("%s lists %q, the reference %q", firstboot.StatePath, got, want)
	}
	if after.state.Node != ref.state.Node || after.state.MAC != ref.state.MAC {
		t.Errorf("%s names %s %s, the reference %s %s", firstboot.StatePath, after.state.Node, after.state.MAC, ref.state.Node, ref.state.MAC)
	}
	// What was recorded before the cut is kept, and so is a host key
	// that was on the card whole (the image has none).
	for step := range cut.state.Done {
		for _, p := range stepFiles[step] {
			if perNode[p] && !bytes.Equal(after.files[p].data, cut.files[p].data) {
				t.Errorf("/%s changed after the cut, though step %s was recorded before it", p, step)
			}
		}
	}
	for _, typ := range hostKeyTypes {
		name := "etc/ssh/ssh_host_" + typ + "_key"
		_, priv := cut.files[name]
		_, pub := cut.files[name+".pub"]
		if priv && pub && (!bytes.Equal(after.files[name].data, cut.files[name].data) || !bytes.Equal(after.files[name+".pub"].data, cut.files[name+".pub"].data)) {
			t.Errorf("/%s was on the card whole at the cut and changed after it", name)
		}
	}
	// Everything written at first boot and by policy, and nothing else.
	for _, p := range slices.Sorted(maps.Keys(ref.files)) {
		r, a := ref.files[p], after.files[p]
		switch _, ok := after.files[p]; {
		case !ok:
			t.Errorf("/%s: the reference boot wrote it, the card lacks it", p)
		case a.mode != r.mode:
			t.Errorf("/%s: mode %v, the reference's %v", p, a.mode, r.mode)
		case a.mode.IsRegular() && len(a.data) == 0 && len(r.data) > 0:
			t.Errorf("/%s is empty", p)
		case !perNode[p] && !bytes.Equal(a.data, r.data):
			t.Errorf("/%s holds %q, the reference %q", p, a.data, r.data)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(after.files)) {
		if _, ok := ref.files[p]; !ok {
			t.Errorf("/%s (%v, %d bytes): left by the cut, the reference has no such file", p, after.files[p].mode, len(after.files[p].data))
		}
	}
	checkPerNode(t, after)
}

var machineID = regexp.MustCompile(`^[0-9a-f]{32}\n$`)

// checkPerNode checks the per-node files present: a machine-id, and host
// key pairs whose private half ssh-keygen reads and derives the public one
// from, recorded in firstboot.json once their step is.
func checkPerNode(t *testing.T, c cardState) {
	t.Helper()
	if f, ok := c.files["etc/machine-id"]; ok && !machineID.Match(f.data) {
		t.Errorf("/etc/machine-id holds %q", f.data)
	}
	_, keysDone := c.state.Done[firstboot.StepSSHHostKeys]
	dir := t.TempDir()
	for _, typ := range hostKeyTypes {
		name := "etc/ssh/ssh_host_" + typ + "_key"
		priv, okPriv := c.files[name]
		pub, okPub := c.files[name+".pub"]
		if !okPriv && !okPub {
			continue
		}
		if !okPriv || !okPub {
			// Mid-step a cut may leave half a pair, which the step
			// makes anew; a recorded step has whole ones.
			if keysDone {
				t.Errorf("/%s: only one half of the key pair (private %v, public %v)", name, okPriv, okPub)
			}
			continue
		}
		p := filepath.Join(dir, typ)
		if err := os.WriteFile(p, priv.data, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("ssh-keygen", "-y", "-f", p).CombinedOutput()
		derived, have := strings.Fields(string(out)), strings.Fields(string(pub.data))
		if err != nil || len(derived) < 2 || len(have) < 2 || derived[0] != have[0] || derived[1] != have[1] {
			t.Errorf("/%s: ssh-keygen -y gives %q (%v); the .pub holds %q", name, out, err, pub.data)
		}
		if fp := sshFingerprint(pub.data); keysDone && c.state.HostKeys[typ] != fp {
			t.Errorf("/%s.pub is %s, %s records %q", name, fp, firstboot.StatePath, c.state.HostKeys[typ])
		}
	}
}

// stepOrder lists the first-boot steps in the order the console shows
// them done.
func stepOrder(log string) []string {
	var order []string
	for _, m := range stepDone.FindAllStringSubmatch(log, -1) {
		order = append(order, m[1])
	}
	return order
}

var stepDone = regexp.MustCompile(`nodeinit: firstboot: (\S+) done \(`)

// identity prints a card's hostname, machine-id and host key
// fingerprints ("-" where missing).
func identity(c cardState) string {
	get := func(p string) string {
		if f, ok := c.files[p]; ok {
			return strings.TrimSpace(string(f.data))
		}
		return "-"
	}
	out := fmt.Sprintf("hostname %s, machine-id %s", get("etc/hostname"), get("etc/machine-id"))
	for _, typ := range hostKeyTypes {
		fp := "-"
		if f, ok := c.files["etc/ssh/ssh_host_"+typ+"_key.pub"]; ok {
			fp = sshFingerprint(f.data)
		}
		out += fmt.Sprintf(", %s %s", typ, fp)
	}
	return out
}

// hostKeyTypes are the SSH host keys first boot makes.
var hostKeyTypes = []string{"ed25519", "ecdsa"}

// sshFingerprint is the SHA256 fingerprint of a .pub line, as ssh-keygen
// -l prints it.
func sshFingerprint(pub []byte) string {
	f := strings.Fields(string(pub))
	if len(f) < 2 {
		return "(no key)"
	}
	blob, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil {
		return "(not base64)"
	}
	sum := sha256.Sum256(blob)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// doneList returns the steps c records, in boot order.
func doneList(order []string, c cardState) []string {
	var out []string
	for _, s := range order {
		if _, ok := c.state.Done[s]; ok {
			out = append(out, s)
		}
	}
	return out
}

// running says what the node was doing when the power went: the first
// step not recorded, else policy or what came after it.
func running(order []string, c cardState, log string) string {
	for _, s := range order {
		if _, ok := c.state.Done[s]; !ok {
			return "step " + s + " was running"
		}
	}
	var written []string
	for _, p := range policyFiles {
		if _, ok := c.files[p]; ok {
			written = append(written, p)
		}
	}
	if !strings.Contains(log, "nodeinit: policy: applied") {
		return fmt.Sprintf("policy was running (its files on the card: %q)", written)
	}
	lines := strings.Split(grepLines(log, "nodeinit: "), "\n")
	return fmt.Sprintf("policy was done (last: %s)", strings.TrimSpace(lines[len(lines)-1]))
}
