package policy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mkimage/mkimage/internal/atomicfile"
	"github.com/mkimage/mkimage/internal/cluster/plan"
	"github.com/mkimage/mkimage/internal/node/backup"
	"github.com/mkimage/mkimage/internal/node/sshkey"
	"github.com/mkimage/mkimage/internal/node/updater"
)

// Names of what Backup installs in the root.
const (
	SnapshotScript = "usr/local/sbin/nodeinit-snapshot"
	snapshotUnit   = "nodeinit-snapshot"
)

// Backup installs the snapshot schedule: a script that takes a read-only
// btrfs snapshot of each scheduled subvolume (the configured one, and the
// containers' /var/lib/lxc) and prunes to the newest Keep, run by a
// systemd timer when the root has systemd, else by cron (/etc/cron.d, or
// busybox crond's /etc/crontabs/root). With a target, the script then
// runs `nodeinit backup export`, and the node's settings, its SSH key
// (made once, here, on the node) and the target's host keys are put
// where that command reads them.
func Backup(env Env) error {
	b := env.Node.Backup
	if b == nil {
		return nil
	}
	var script strings.Builder
	fmt.Fprintf(&script, "#!/bin/sh\n%s# snapshot %s into %s, keep the newest %d of each\nset -eu\nmkdir -p %s\n", generated, strings.Join(backup.Subvolumes(b), " "), b.Dir, b.Keep, b.Dir)
	for _, sv := range backup.Subvolumes(b) {
		name := backup.Prefix(sv)
		fmt.Fprintf(&script, `btrfs subvolume snapshot -r %s "%s/%s-$(date +%%Y%%m%%d-%%H%%M%%S)"
ls -1d %s/%s-* 2>/dev/null | sort -r | tail -n +%d | while read -r s; do
	btrfs subvolume delete "$s"
done
`, sv, b.Dir, name, b.Dir, name, b.Keep+1)
	}
	if b.Target != nil {
		if err := backupTarget(env, b); err != nil {
			return err
		}
		// An export that fails (the target down) is logged and retried
		// after the next snapshot; it does not fail the snapshot unit: a
		// failed unit would mark the system degraded and fail the health
		// check of an update.
		fmt.Fprintf(&script, "/%s backup export || echo \"nodeinit-snapshot: export failed; the next snapshot retries it (see /%s)\" >&2\n", updater.BinaryPath, backup.StatusFile)
	}
	if err := writeIfChanged(filepath.Join(env.Root, SnapshotScript), script.String(), 0o755); err != nil {
		return err
	}
	r, err := os.OpenRoot(env.Root)
	if err != nil {
		return err
	}
	defer r.Close()
	root := env.Root
	switch {
	case hasSystemd(r):
		sys := filepath.Join(root, "etc/systemd/system")
		svc := fmt.Sprintf("%s[Unit]\nDescription=btrfs snapshot of %s\n\n[Service]\nType=oneshot\nExecStart=/%s\n", generated, b.Subvolume, SnapshotScript)
		timer := fmt.Sprintf("%s[Unit]\nDescription=btrfs snapshot of %s (%s)\n\n[Timer]\nOnCalendar=%s\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n", generated, b.Subvolume, b.OnCalendar, b.OnCalendar)
		if err := writeIfChanged(filepath.Join(sys, snapshotUnit+".service"), svc, 0o644); err != nil {
			return err
		}
		if err := writeIfChanged(filepath.Join(sys, snapshotUnit+".timer"), timer, 0o644); err != nil {
			return err
		}
		return symlink(r, "/etc/systemd/system/"+snapshotUnit+".timer", filepath.Join("etc/systemd/system/timers.target.wants", snapshotUnit+".timer"))
	case exists(r, "etc/cron.d"):
		return writeIfChanged(filepath.Join(root, "etc/cron.d", snapshotUnit), fmt.Sprintf("%s%s root /%s\n", generated, b.Cron, SnapshotScript), 0o644)
	case exists(r, "bin/busybox") || exists(r, "etc/crontabs"):
		return cronLine(filepath.Join(root, "etc/crontabs/root"), fmt.Sprintf("%s /%s", b.Cron, SnapshotScript))
	}
	env.Log("nodeinit: backup: root has neither systemd nor cron; snapshots not scheduled")
	return nil
}

// cronLine keeps exactly one line running the snapshot script in a user
// crontab, leaving the others.
func cronLine(path, line string) error {
	old, _ := os.ReadFile(path)
	var out []string
	for _, l := range strings.Split(strings.TrimRight(string(old), "\n"), "\n") {
		if l != "" && !strings.Contains(l, SnapshotScript) {
			out = append(out, l)
		}
	}
	out = append(out, line)
	return writeIfChanged(path, strings.Join(out, "\n")+"\n", 0o600)
}

// backupTarget writes what `nodeinit backup export` reads: the node's
// backup settings, the target's host keys, and the node's SSH key, made
// here at the first boot with a target and printed at every boot, so the
// operator can authorize it on the target.
func backupTarget(env Env, b *plan.Backup) error {
	cfg, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return err
	}
	if err := writeIfChanged(filepath.Join(env.Root, backup.ConfigFile), string(cfg)+"\n", 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(env.Root, filepath.Dir(backup.KeyFile)), 0o700); err != nil {
		return err
	}
	if err := writeIfChanged(filepath.Join(env.Root, backup.KnownHostsFile), backup.KnownHosts(b.Target), 0o644); err != nil {
		return err
	}
	pub, made, err := sshkey.Ensure(filepath.Join(env.Root, backup.KeyFile), "backup@"+env.Node.Name)
	if err != nil {
		return fmt.Errorf("backup key: %w", err)
	}
	if made {
		env.Log("nodeinit: backup: made this node's SSH key /%s", backup.KeyFile)
	}
	env.Log("nodeinit: backup: exports to %s:%s as %s", b.Target.Host, b.Target.Dir, strings.TrimSpace(string(pub)))
	return nil
}

func writeIfChanged(path, content string, perm os.FileMode) error {
	return atomicfile.WriteFileIfChanged(path, []byte(content), perm)
}
