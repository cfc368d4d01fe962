// Package preconfigure is nodeinit's preconfigure mode
// (nodeinit.preconfigure on the command line, from `mkimage
// --preconfigure` at build time): the root's first-boot hooks run once in
// a VM at build time, so each card does not configure its packages again,
// while everything that must differ per node stays for each card's own
// first boot.
package preconfigure

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/atomicfile"
	"github.com/mkimage/mkimage/internal/node/firstboot"
	"github.com/mkimage/mkimage/internal/node/pid1"
	"github.com/mkimage/mkimage/internal/node/rootdev"
)

// Run runs the root's first-boot hooks alone on the root mounted at root
// (made writable by writable first), recording them as done; then it
// removes the per-node files package scripts made, unmounts the root and
// powers the machine off. It never returns. logf also gets the hooks'
// lines, which start with "nodeinit: " (see firstboot.Env.Log).
func Run(ctx context.Context, root string, writable func() error, logf func(string, ...any)) {
	start := time.Now()
	ran, err := hooks(ctx, root, writable, logf)
	if err != nil {
		Failed(err, logf)
	}
	what := strings.Join(ran, ", ")
	if what == "" {
		what = "no pending hooks"
	}
	logf("preconfigure: done (%s in %v)", what, time.Since(start).Round(time.Millisecond))
	powerOff(logf)
}

func hooks(ctx context.Context, root string, writable func() error, logf func(string, ...any)) ([]string, error) {
	if err := writable(); err != nil {
		return nil, err
	}
	ran, err := firstboot.RunHooks(ctx, firstboot.Env{
		Root: root, Sys: "/sys", Dev: "/dev", Proc: "/proc", Run: "/run", Log: logf,
	})
	if err != nil {
		return ran, err
	}
	if err := scrubIdentity(root, logf); err != nil {
		return ran, fmt.Errorf("removing per-node files: %w", err)
	}
	if err := unmountRoot(root, logf); err != nil {
		return ran, err
	}
	return ran, nil
}

// scrubIdentity removes what package scripts may have generated that must
// be unique per node: SSH host keys (openssh-server's postinst) and the
// machine-id (systemd's). Each card's first boot makes its own (the
// firstboot steps ssh-host-keys and machine-id), so the image carries no
// private key and no shared identity.
func scrubIdentity(root string, logf func(string, ...any)) error {
	keys, err := filepath.Glob(filepath.Join(root, "etc/ssh/ssh_host_*"))
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := os.Remove(k); err != nil {
			return err
		}
		logf("preconfigure: removed %s", strings.TrimPrefix(k, root))
	}
	// An empty machine-id, as Debian's images ship it: systemd and
	// first boot fill it in on the node.
	mid := filepath.Join(root, "etc/machine-id")
	if fi, err := os.Lstat(mid); err == nil && fi.Mode().IsRegular() && fi.Size() > 0 {
		if err := atomicfile.WriteFile(mid, nil, 0o444); err != nil {
			return err
		}
		logf("preconfigure: emptied /etc/machine-id")
	}
	for _, p := range []string{"var/lib/dbus/machine-id", "var/lib/systemd/random-seed"} {
		full := filepath.Join(root, p)
		if fi, err := os.Lstat(full); err == nil && fi.Mode().IsRegular() {
			if err := os.Remove(full); err != nil {
				return err
			}
			logf("preconfigure: removed /%s", p)
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// unmountRoot makes the root durable and unmounts it; a root something
// still holds is remounted read-only instead (as clean on disk).
func unmountRoot(root string, logf func(string, ...any)) error {
	rootdev.Sync(root)
	unix.Sync()
	if err := unix.Unmount(root, 0); err != nil {
		logf("preconfigure: unmount %s: %v; remounting it read-only", root, err)
		if err := unix.Mount("", root, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("unmount %s: %w", root, err)
		}
		unix.Sync()
		return nil
	}
	logf("preconfigure: root unmounted")
	return nil
}

// Failed says why preconfigure failed and powers off; it never returns.
// Nobody is at that console: a rescue shell would only hold up the
// build.
func Failed(err error, logf func(string, ...any)) {
	logf("preconfigure: failed: %v", err)
	powerOff(logf)
}

func powerOff(logf func(string, ...any)) {
	err := pid1.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	logf("preconfigure: power off: %v", err)
	for {
		time.Sleep(time.Hour)
	}
}
