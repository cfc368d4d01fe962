// Package modload loads kernel modules from the initramfs: the list the
// builder resolved (nodeinit's modules step) and single module files
// (package coldplug's loader).
package modload

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// List loads the module files named in the file list, one a line, in
// order. The builder resolved dependencies, so each module's own
// dependencies are already loaded. No list means no modules.
func List(list string, logf func(string, ...any)) error {
	f, err := os.Open(list)
	if errors.Is(err, os.ErrNotExist) {
		logf("no %s: loading no modules", list)
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
			logf("warning: %s is not for the running kernel %s", p, release)
		}
		if err := loadLogged(p, logf); err != nil {
			return err
		}
		n++
	}
	if err := sc.Err(); err != nil {
		return err
	}
	logf("loaded %d modules in %v", n, time.Since(start).Round(time.Millisecond))
	return nil
}

// loadLogged loads p and says so; a module loaded already is fine.
func loadLogged(p string, logf func(string, ...any)) error {
	name := strings.TrimSuffix(path.Base(p), ".ko")
	err := Load(p)
	switch {
	case err == nil:
		logf("loaded module %s", name)
	case errors.Is(err, unix.EEXIST):
		logf("module %s already loaded", name)
	default:
		return fmt.Errorf("load module %s: %w", p, err)
	}
	return nil
}

// Load loads the module file p. An error wrapping unix.EEXIST means the
// module is loaded already.
func Load(p string) error {
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
