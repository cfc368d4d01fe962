package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mkimage/mkimage/internal/atomicfile"
)

// Names of what Backup installs in the root.
const (
	SnapshotScript = "usr/local/sbin/nodeinit-snapshot"
	snapshotUnit   = "nodeinit-snapshot"
)

// Backup installs the snapshot schedule: a script that takes a read-only
// btrfs snapshot and prunes to the newest Keep, run by a systemd timer
// when the root has systemd, else by cron (/etc/cron.d, or busybox crond's
// /etc/crontabs/root).
func Backup(env Env) error {
	b := env.Node.Backup
	if b == nil {
		return nil
	}
	name := strings.Trim(strings.ReplaceAll(b.Subvolume, "/", "-"), "-")
	if name == "" {
		name = "root"
	}
	script := fmt.Sprintf(`#!/bin/sh
%s# snapshot %s into %s, keep the newest %d
set -eu
mkdir -p %s
btrfs subvolume snapshot -r %s "%s/%s-$(date +%%Y%%m%%d-%%H%%M%%S)"
ls -1d %s/%s-* 2>/dev/null | sort -r | tail -n +%d | while read -r s; do
	btrfs subvolume delete "$s"
done
`, generated, b.Subvolume, b.Dir, b.Keep, b.Dir, b.Subvolume, b.Dir, name, b.Dir, name, b.Keep+1)
	if err := writeIfChanged(filepath.Join(env.Root, SnapshotScript), script, 0o755); err != nil {
		return err
	}
	root := env.Root
	switch {
	case hasSystemd(root):
		sys := filepath.Join(root, "etc/systemd/system")
		svc := fmt.Sprintf("%s[Unit]\nDescription=btrfs snapshot of %s\n\n[Service]\nType=oneshot\nExecStart=/%s\n", generated, b.Subvolume, SnapshotScript)
		timer := fmt.Sprintf("%s[Unit]\nDescription=btrfs snapshot of %s (%s)\n\n[Timer]\nOnCalendar=%s\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n", generated, b.Subvolume, b.OnCalendar, b.OnCalendar)
		if err := writeIfChanged(filepath.Join(sys, snapshotUnit+".service"), svc, 0o644); err != nil {
			return err
		}
		if err := writeIfChanged(filepath.Join(sys, snapshotUnit+".timer"), timer, 0o644); err != nil {
			return err
		}
		return symlink("/etc/systemd/system/"+snapshotUnit+".timer", filepath.Join(sys, "timers.target.wants", snapshotUnit+".timer"))
	case exists(root, "etc/cron.d"):
		return writeIfChanged(filepath.Join(root, "etc/cron.d", snapshotUnit), fmt.Sprintf("%s%s root /%s\n", generated, b.Cron, SnapshotScript), 0o644)
	case exists(root, "bin/busybox") || exists(root, "etc/crontabs"):
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

func writeIfChanged(path, content string, perm os.FileMode) error {
	return atomicfile.WriteFileIfChanged(path, []byte(content), perm)
}
