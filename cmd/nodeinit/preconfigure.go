package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/atomicfile"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/node/firstboot"
	"github.com/mkimage/mkimage/internal/node/pid1"
	"github.com/mkimage/mkimage/internal/node/rootdev"
)

// preconfigure runs the root's first-boot hooks alone (nodeinit.preconfigure),
// then powers the machine off. It never returns.
func preconfigure(st *state) {
	start := time.Now()
	ran, err := preconfigureRoot(st)
	if err != nil {
		preconfigureFailed(err)
	}
	what := strings.Join(ran, ", ")
	if what == "" {
		what = "no pending hooks"
	}
	say("preconfigure: done (%s in %v)", what, time.Since(start).Round(time.Millisecond))
	powerOff()
}

func preconfigureRoot(st *state) ([]string, error) {
	if err := st.rootWritable(); err != nil {
		return nil, err
	}
	ran, err := firstboot.RunHooks(context.Background(), firstboot.Env{
		Root: newRoot, Sys: "/sys", Dev: "/dev", Proc: "/proc", Run: "/run", Log: logf,
	})
	if err != nil {
		return ran, err
	}
	if err := scrubIdentity(newRoot); err != nil {
		return ran, fmt.Errorf("removing per-node files: %w", err)
	}
	if err := unmountRoot(newRoot); err != nil {
		return ran, err
	}
	return ran, nil
}

// scrubIdentity removes what package scripts may have generated that must
// be unique per node: SSH host keys (openssh-server's postinst) and the
// machine-id (systemd's). Each card's first boot makes its own (the
// firstboot steps ssh-host-keys and machine-id), so the image carries no
// private key and no shared identity.
func scrubIdentity(root string) error {
	keys, err := filepath.Glob(filepath.Join(root, "etc/ssh/ssh_host_*"))
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := os.Remove(k); err != nil {
			return err
		}
		say("preconfigure: removed %s", strings.TrimPrefix(k, root))
	}
	// An empty machine-id, as Debian's images ship it: systemd and
	// first boot fill it in on the node.
	mid := filepath.Join(root, "etc/machine-id")
	if fi, err := os.Lstat(mid); err == nil && fi.Mode().IsRegular() && fi.Size() > 0 {
		if err := atomicfile.WriteFile(mid, nil, 0o444); err != nil {
			return err
		}
		say("preconfigure: emptied /etc/machine-id")
	}
	for _, p := range []string{"var/lib/dbus/machine-id", "var/lib/systemd/random-seed"} {
		full := filepath.Join(root, p)
		if fi, err := os.Lstat(full); err == nil && fi.Mode().IsRegular() {
			if err := os.Remove(full); err != nil {
				return err
			}
			say("preconfigure: removed /%s", p)
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// unmountRoot makes the root durable and unmounts it; a root something
// still holds is remounted read-only instead (as clean on disk).
func unmountRoot(root string) error {
	rootdev.Sync(root)
	unix.Sync()
	if err := unix.Unmount(root, 0); err != nil {
		say("preconfigure: unmount %s: %v; remounting it read-only", root, err)
		if err := unix.Mount("", root, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("unmount %s: %w", root, err)
		}
		unix.Sync()
		return nil
	}
	say("preconfigure: root unmounted")
	return nil
}

// preconfigureFailed says why and powers off; it never returns.
func preconfigureFailed(err error) {
	say("preconfigure: failed: %v", err)
	powerOff()
}

func powerOff() {
	err := pid1.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	say("preconfigure: power off: %v", err)
	for {
		time.Sleep(time.Hour)
	}
}
