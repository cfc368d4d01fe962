package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/node/bootcfg"
)

// mountEarly mounts the kernel filesystems the other steps need. A mount
// already there (say, the kernel mounted devtmpfs) is fine.
func mountEarly(*state) error {
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

// loadModules loads the builder's list in order. The builder resolved
// dependencies, so each module's own dependencies are already loaded.
func loadModules(*state) error {
	f, err := os.Open(modulesList)
	if errors.Is(err, os.ErrNotExist) {
		say("no %s: loading no modules", modulesList)
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	var uts unix.Utsname
	unix.Uname(&uts)
	release := unix.ByteSliceToString(uts.Release[:])
	sc := bufio.NewScanner(f)
	n := 0
	start := time.Now()
	for sc.Scan() {
		p := strings.TrimSpace(sc.Text())
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		if !strings.Contains(p, "/lib/modules/"+release+"/") {
			say("warning: %s is not for the running kernel %s", p, release)
		}
		if err := loadModule(p); err != nil {
			return err
		}
		n++
	}
	if err := sc.Err(); err != nil {
		return err
	}
	say("loaded %d modules in %v", n, time.Since(start).Round(time.Millisecond))
	return nil
}

func loadModule(p string) error {
	name := strings.TrimSuffix(path.Base(p), ".ko")
	err := finitModule(p)
	switch {
	case err == nil:
		say("loaded module %s", name)
	case errors.Is(err, unix.EEXIST):
		say("module %s already loaded", name)
	default:
		return fmt.Errorf("load module %s: %w", p, err)
	}
	return nil
}

// finitModule loads the module file p. An error wrapping unix.EEXIST
// means the module is loaded already.
func finitModule(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if errors.Is(err, unix.ENOSYS) {
		// Kernels without finit_module take the bytes.
		var b []byte
		if b, err = os.ReadFile(p); err == nil {
			err = unix.InitModule(b, "")
		}
	}
	return err
}

func mountRoot(st *state) error {
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		return err
	}
	if bootcfg.IsNetRoot(st.cfg.Root) {
		return mountNetRoot(st)
	}
	flags, data := mountOptions(st.cfg.RootFlags)
	if err := unix.Mount(st.rootDev, newRoot, st.cfg.RootFSType, flags, data); err != nil {
		return fmt.Errorf("mount %s (%s, options %q) on %s: %w", st.rootDev, st.cfg.RootFSType, st.cfg.RootFlags, newRoot, err)
	}
	say("mounted %s on %s (%s)", st.rootDev, newRoot, st.cfg.RootFSType)
	return nil
}

// mountOptions splits rootflags= into mount flags and the options the
// filesystem reads (subvol=, compress=, ...).
func mountOptions(opts string) (uintptr, string) {
	var flags uintptr
	var data []string
	for _, o := range strings.Split(opts, ",") {
		switch o {
		case "":
		case "ro":
			flags |= unix.MS_RDONLY
		case "rw":
			flags &^= unix.MS_RDONLY
		case "noatime":
			flags |= unix.MS_NOATIME
		case "relatime":
			flags |= unix.MS_RELATIME
		case "nodev":
			flags |= unix.MS_NODEV
		case "nosuid":
			flags |= unix.MS_NOSUID
		case "noexec":
			flags |= unix.MS_NOEXEC
		default:
			data = append(data, o)
		}
	}
	return flags, strings.Join(data, ",")
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

// switchRoot moves the kernel filesystems into the root, makes it "/"
// and runs its init. It checks the init first: after the switch the
// initramfs and its rescue shell are gone.
func switchRoot(st *state) error {
	if st.cfg.Rescue {
		return fmt.Errorf("nodeinit.rescue on the command line: stopping before switch_root")
	}
	full, err := resolveIn(newRoot, st.cfg.Init)
	if err != nil {
		return fmt.Errorf("init %s in the root: %w", st.cfg.Init, err)
	}
	if fi, err := os.Stat(full); err != nil || fi.Mode()&0o111 == 0 || !fi.Mode().IsRegular() {
		return fmt.Errorf("init %s in the root is not an executable file", st.cfg.Init)
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
	say("switching root to %s, running %s", st.rootDev, st.cfg.Init)
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("switch_root: move %s to /: %w", newRoot, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("switch_root: chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("switch_root: %w", err)
	}
	argv := []string{st.cfg.Init}
	err = unix.Exec(st.cfg.Init, argv, os.Environ())
	return fmt.Errorf("exec %s: %w", st.cfg.Init, err)
}

// rescue never returns: it says why and keeps a shell on the console.
func rescue(why string) {
	say("rescue shell: %s", why)
	for {
		cmd := exec.Command(rescueShell)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.Env = append(os.Environ(), "PS1=rescue# ")
		// A session of its own makes the console its controlling
		// terminal, so ^C reaches the shell, not PID 1.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		err := cmd.Run()
		if err != nil && cmd.Process == nil {
			// Without a console TTY, try without one.
			cmd = exec.Command(rescueShell)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
			err = cmd.Run()
		}
		say("rescue shell exited (%v); starting it again", err)
		time.Sleep(time.Second)
	}
}
