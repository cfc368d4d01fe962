package builder

import (
	"bytes"
	"fmt"
	"path"

	"github.com/mkimage/mkimage/internal/build/cpio"
	"github.com/mkimage/mkimage/internal/compress"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/node/updater"
)

// What an updatable root carries for the node's update command
// (package updater): the nodeinit binary of the version's own initramfs,
// the keys bundles must be signed by, the board's name, and what runs
// `nodeinit update check` at every boot.
const (
	// updaterBinary is the initramfs's u-root busybox in the root;
	// updater.BinaryPath links to it under the name it runs nodeinit by.
	updaterBinary   = "usr/lib/mkimage/bb"
	busyboxInInitrd = "bbin/bb"

	checkService  = "mkimage-check.service"
	updateService = "mkimage-update.service"
	updateTimer   = "mkimage-update.timer"
)

// systemdUnits are the update units of a root with systemd.
var systemdUnits = map[string]string{
	checkService: `[Unit]
Description=mkimage: commit the version being tried once it is up and its checks pass, or roll back
ConditionKernelCommandLine=mkimage.version
# The checks judge a node that is reachable, and the status report
# needs the network.
Wants=network-online.target
After=network-online.target

[Service]
# exec, not oneshot: a health check may wait for the boot to finish
# (systemctl is-system-running --wait), which a oneshot start job would
# hold up for ever.
Type=exec
ExecStart=/` + updater.BinaryPath + ` update check
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
`,
	updateService: `[Unit]
Description=mkimage: follow the channel in /` + updater.ChannelURLFile + `, or apply the bundle named in /` + updater.URLFile + `
# Either file (the | makes the conditions alternatives); the command
# follows the channel when there is one.
ConditionPathExists=|/` + updater.ChannelURLFile + `
ConditionPathExists=|/` + updater.URLFile + `
ConditionKernelCommandLine=mkimage.version
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart=/` + updater.BinaryPath + ` update apply --reboot
`,
	updateTimer: `[Unit]
Description=mkimage: look for an update bundle now and then

[Timer]
OnBootSec=15min
OnUnitActiveSec=6h
RandomizedDelaySec=1h

[Install]
WantedBy=timers.target
`,
}

// systemdHealthCheck passes once the boot finished with no unit failed.
const systemdHealthCheck = `#!/bin/sh
# mkimage: a version is good once systemd finished starting it and no
# unit failed ("degraded" fails the check).
exec systemctl is-system-running --wait
`

// minimalCheckHook runs the check from the minimal root's rcS, after the
// root's other boot hooks.
const minimalCheckHook = `#!/bin/sh
# mkimage: check the version being tried; commit it, or reboot.
/` + updater.BinaryPath + ` update check
`

// addUpdater puts into an updatable root what the node's update command
// needs (see the constants above). A root that has neither systemd nor
// the minimal root's boot hooks gets the command and the keys; its own
// init must run `nodeinit update check` at every boot.
func (in *inputs) addUpdater(o *Options) error {
	if in.updateKeys == nil {
		return in.addNodeCommand(o)
	}
	t := o.Epoch
	put := func(p string, perm uint32, data string) error {
		return putInode(in.root, p, fstree.NewFile(perm, []byte(data), t), t)
	}
	if err := put(updater.KeysFile, 0o644, string(in.updateKeys)); err != nil {
		return err
	}
	if err := put(updater.BoardFile, 0o644, in.board.Name+"\n"); err != nil {
		return err
	}
	if o.ChannelURL != "" {
		if err := put(updater.ChannelURLFile, 0o644, o.ChannelURL+"\n"); err != nil {
			return err
		}
	}
	if err := in.putNodeCommand(o); err != nil {
		return err
	}
	switch {
	case hasSystemd(in.root):
		// Debian since bookworm merges /usr: /lib is a symlink to usr/lib,
		// and the tree puts nothing through a symlink.
		unitDir := "lib/systemd/system"
		if n, ok := in.root.Lookup("lib"); ok && n.Type() == fstree.ModeSymlink {
			unitDir = "usr/lib/systemd/system"
		}
		for name, unit := range systemdUnits {
			if err := put(unitDir+"/"+name, 0o644, unit); err != nil {
				return err
			}
		}
		for name, target := range map[string]string{checkService: "multi-user.target", updateTimer: "timers.target"} {
			link := "etc/systemd/system/" + target + ".wants/" + name
			if err := putInode(in.root, link, fstree.NewSymlink("/lib/systemd/system/"+name, t), t); err != nil {
				return err
			}
		}
		return put(path.Join(updater.HookDirs[1], "50-system-running"), 0o755, systemdHealthCheck)
	case o.Rootfs == "minimal":
		return put("etc/boot.d/90-mkimage-check", 0o755, minimalCheckHook)
	}
	w := fmt.Sprintf("the root has neither systemd nor the minimal root's boot hooks: its init must run /%s update check at every boot, or no update is ever committed (U-Boot falls back after 3 boots)", updater.BinaryPath)
	in.warnings = append(in.warnings, w)
	logf(o, "warning: %s", w)
	return nil
}

// addNodeCommand puts nodeinit in a root that is not updatable when the
// cluster config gives it a use there: a backup target (the snapshot
// script runs `nodeinit backup export`) or containers (mkimage container
// move runs `nodeinit container` on the nodes).
func (in *inputs) addNodeCommand(o *Options) error {
	c := in.config
	if c == nil {
		return nil
	}
	target := c.Backup != nil && c.Backup.Target != nil
	containers := c.LXC != nil && len(c.LXC.Containers) > 0
	if !target && !containers {
		return nil
	}
	return in.putNodeCommand(o)
}

// putNodeCommand puts the initramfs's u-root busybox in the root and
// links nodeinit to it (updater.BinaryPath): the node's commands run the
// very code of the version's own initramfs.
func (in *inputs) putNodeCommand(o *Options) error {
	t := o.Epoch
	bb, err := initrdFile(in.initrd, busyboxInInitrd)
	if err != nil {
		return fmt.Errorf("the node's nodeinit command: %w", err)
	}
	if err := putInode(in.root, updaterBinary, &fstree.Inode{Mode: fstree.ModeRegular | 0o755, Atime: t, Mtime: t, Ctime: t, Content: bb.Content}, t); err != nil {
		return err
	}
	return putInode(in.root, updater.BinaryPath, fstree.NewSymlink(path.Join(upTo(path.Dir(updater.BinaryPath)), updaterBinary), t), t)
}

// hasSystemd tells whether the root boots systemd.
func hasSystemd(root *fstree.Tree) bool {
	for _, p := range []string{"lib/systemd/systemd", "usr/lib/systemd/systemd"} {
		if _, ok := root.Lookup(p); ok {
			return true
		}
	}
	return false
}

// initrdFile returns the regular file at p in an initramfs image (a
// cpio archive, compressed or not).
func initrdFile(initrd []byte, p string) (*fstree.Inode, error) {
	r, _, err := compress.Open(bytes.NewReader(initrd))
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	defer r.Close()
	t, err := cpio.Read(r)
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	n, ok := t.Lookup(p)
	if !ok || n.Type() != fstree.ModeRegular {
		return nil, fmt.Errorf("initramfs has no %s (the u-root busybox nodeinit runs from)", p)
	}
	return n, nil
}
