package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/node/bootcfg"
)

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
