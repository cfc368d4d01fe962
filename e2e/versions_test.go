package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestUpdatableBoot: an image built with --update-key boots through
// U-Boot's counting boot script into its version: the root is the live
// snapshot of the read-only roots/<id> nodeinit makes at the version's
// first boot (and only then), with the state subvolumes mounted into it.
// The version id is the one `mkimage update` gives the same inputs, so
// that version's bundles (and later ones made against it) apply to the
// card, and the root runs the btrfs that applies them.
func TestUpdatableBoot(t *testing.T) {
	needQEMU(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "fleet")
	mustRun(t, "key", "generate", "-o", key)
	env := []string{"SOURCE_DATE_EPOCH=1700000000"}
	// Boot 1 snapshots the root, changes it and asks for a rollback to
	// the snapshot; boot 2 finds it rolled back.
	overlay := markerOverlay(t, `if [ ! -e /.snapshots/root-e2e ]; then
	echo snapshotted > /etc/e2e-state && sync
	btrfs subvolume snapshot -r / /.snapshots/root-e2e >/dev/null
	echo changed > /etc/e2e-state
	nodeinit backup rollback root-e2e 2>&1
	sync
fi
echo "E2E-ROLLBACK $(cat /etc/e2e-state)"
echo "E2E-BTRFS $(btrfs --version 2>&1)"
echo "E2E-VERSION $(grep -o 'mkimage.version=[0-9a-f]*' /proc/cmdline) root=$(awk '$5 == "/" {print $4}' /proc/self/mountinfo) lxc=$(awk '$5 == "/var/lib/lxc" {print $4}' /proc/self/mountinfo) panic=$(cat /proc/sys/kernel/panic)"`)
	inputs := []string{"--board", "qemu-virt", "--rootfs", "minimal", "--update-key", key + ".pub", "--overlay", overlay, "-q"}
	img := filepath.Join(dir, "v1.img")
	if _, errs, err := run(t, env, append(inputs, "-o", img)...); err != nil {
		t.Fatalf("build: %v\n%s", err, errs)
	}
	var man struct {
		Version string `json:"version_id"`
	}
	b, err := os.ReadFile(img + ".manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &man); err != nil || !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(man.Version) {
		t.Fatalf("manifest version %q (%v)", man.Version, err)
	}
	id := man.Version

	for boot := 1; boot <= 2; boot++ {
		log := qemu(t, img, "E2E-VERSION", "--in-place")
		consoleHas(t, log,
			"mkimage boot: state good "+id+" try "+id+" tries 0",
			"nodeinit: version: "+id,
			"E2E-VERSION mkimage.version="+id+" root=/live/"+id+" lxc=/state/lxc panic=10",
		)
		// The minimal root of an updatable image carries btrfs-progs
		// (with its libraries) to receive updates with.
		if !regexp.MustCompile(`E2E-BTRFS btrfs-progs v[0-9]`).MatchString(log) {
			t.Errorf("boot %d: no \"E2E-BTRFS btrfs-progs v...\" on the console:\n%s", boot, tail(log, 30))
		}
		made := "nodeinit: version " + id + ": first boot: live/" + id + " made from roots/" + id
		if strings.Contains(log, made) != (boot == 1) {
			t.Errorf("boot %d: %q on the console: %v, want %v", boot, made, strings.Contains(log, made), boot == 1)
		}
		if boot == 1 {
			consoleHas(t, log, "nodeinit: backup: the next boot rolls the root back to root-e2e", "E2E-ROLLBACK changed")
		} else {
			consoleHas(t, log, "nodeinit: version "+id+": root rolled back to snapshot root-e2e; the root before is live/"+id+".before-rollback-", "E2E-ROLLBACK snapshotted")
		}
	}

	// The bundle of the same inputs names the same version.
	bdir := filepath.Join(dir, "bundle")
	if _, errs, err := run(t, env, append([]string{"update", "--key", key, "-o", bdir}, inputs...)...); err != nil {
		t.Fatalf("update: %v\n%s", err, errs)
	}
	var m struct {
		ID string `json:"id"`
	}
	b, err = os.ReadFile(filepath.Join(bdir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil || m.ID != id {
		t.Errorf("bundle of the same inputs is version %q (%v), the image %s", m.ID, err, id)
	}
}
