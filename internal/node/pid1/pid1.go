// Package pid1 is what nodeinit does to the system as PID 1 of the
// initramfs: mount the kernel filesystems, switch into the root and run
// its init, set the kernel hostname, reboot or power off, and keep a
// rescue shell on the console when a step fails.
package pid1

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// MountEarly mounts the kernel filesystems the other steps need. A mount
// already there (say, the kernel mounted devtmpfs) is fine.
func MountEarly() error {
	const nodev = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	for _, m := range []struct {
		fstype, dir string
		flags       uintptr
		opts        string
	}{
		{"proc", "/proc", nodev, ""},
		{"sysfs", "/sys", nodev, ""},
		{"devtmpfs", "/dev", unix.MS_NOSUID, "mode=0755"},
		{"tmpfs", "/run", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return err
		}
		err := unix.Mount(m.fstype, m.dir, m.fstype, m.flags, m.opts)
		if err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dir, err)
		}
	}
	return nil
}

// resolveIn resolves p inside root as the root's own processes would
// see it: absolute symlinks point into root, not into the initramfs.
func resolveIn(root, p string) (string, error) {
	for range 40 {
		full := filepath.Join(root, p)
		fi, err := os.Lstat(full)
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			return full, nil
		}
		t, err := os.Readlink(full)
		if err != nil {
			return "", err
		}
		if !path.IsAbs(t) {
			t = path.Join(path.Dir(p), t)
		}
		p = t
	}
	return "", fmt.Errorf("%s: too many symlinks", p)
}

// SwitchRoot moves the kernel filesystems into the root mounted at
// newRoot (from dev), makes it "/" and runs its init. It checks the init
// first: after the switch the initramfs and its rescue shell are gone.
// It returns only on failure.
func SwitchRoot(newRoot, dev, init string, logf func(string, ...any)) error {
	full, err := resolveIn(newRoot, init)
	if err != nil {
		return fmt.Errorf("init %s in the root: %w", init, err)
	}
	if fi, err := os.Stat(full); err != nil || fi.Mode()&0o111 == 0 || !fi.Mode().IsRegular() {
		return fmt.Errorf("init %s in the root is not an executable file", init)
	}
	for _, m := range []string{"/dev", "/proc", "/sys", "/run"} {
		target := filepath.Join(newRoot, m)
		if err := os.MkdirAll(target, 0o755); err != nil {
			return fmt.Errorf("switch_root: %w", err)
		}
		if err := unix.Mount(m, target, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("switch_root: move %s to %s: %w", m, target, err)
		}
	}
	if err := unix.Chdir(newRoot); err != nil {
		return fmt.Errorf("switch_root: %w", err)
	}
	// From here on there is no way back into the initramfs: errors can
	// only be reported.
	logf("switching root to %s, running %s", dev, init)
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("switch_root: move %s to /: %w", newRoot, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("switch_root: chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("switch_root: %w", err)
	}
	argv := []string{init}
	err = unix.Exec(init, argv, os.Environ())
	return fmt.Errorf("exec %s: %w", init, err)
}

// Rescue never returns: it says why and keeps the shell at path shell on
// the console.
func Rescue(shell, why string, logf func(string, ...any)) {
	logf("rescue shell: %s", why)
	for {
		cmd := exec.Command(shell)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.Env = append(os.Environ(), "PS1=rescue# ")
		// A session of its own makes the console its controlling
		// terminal, so ^C reaches the shell, not PID 1.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		err := cmd.Run()
		if err != nil && cmd.Process == nil {
			// Without a console TTY, try without one.
			cmd = exec.Command(shell)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
			err = cmd.Run()
		}
		logf("rescue shell exited (%v); starting it again", err)
		time.Sleep(time.Second)
	}
}

// Reboot syncs the filesystems and restarts or powers off the machine
// (cmd is unix.LINUX_REBOOT_CMD_RESTART or _POWER_OFF). It returns only
// when the kernel refuses (not PID 1, say).
func Reboot(cmd int) error {
	unix.Sync()
	if err := unix.Reboot(cmd); err != nil {
		return err
	}
	for {
		time.Sleep(time.Hour) // the kernel is going down
	}
}
