// Package hookdir lists the hooks in hook directories (a root's
// first-boot hooks, a tried version's health checks) by one rule, so a
// hook a user drops in is taken or skipped the same way everywhere.
package hookdir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Hook is one hook to run.
type Hook struct {
	Name string // file name, what the hooks are ordered by
	Path string // relative to the root it was listed in
}

// List returns the hooks in dirs (relative to root) in name order. A
// hook is an executable regular file or a symlink, taken as it is: it may
// resolve only inside root, where it runs (chrooted). Dot files, editor
// backups (~) and directories are skipped, and a missing directory is
// empty. A name in an earlier directory hides the same name in a later
// one (/etc over /usr/lib), so a non-executable file or a symlink to
// /dev/null there disables a hook the image ships, as systemd's masking
// does.
func List(root string, dirs ...string) ([]Hook, error) {
	seen := map[string]bool{}
	var hooks []Hook
	for _, dir := range dirs {
		ents, err := os.ReadDir(filepath.Join(root, dir))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing hooks: %w", err)
		}
		for _, e := range ents {
			n := e.Name()
			if strings.HasPrefix(n, ".") || strings.HasSuffix(n, "~") || e.IsDir() || seen[n] {
				continue
			}
			seen[n] = true
			p := filepath.Join(dir, n)
			switch {
			case e.Type()&fs.ModeSymlink != 0:
				if t, err := os.Readlink(filepath.Join(root, p)); err == nil && t == os.DevNull {
					continue
				}
			case e.Type().IsRegular():
				fi, err := e.Info()
				if err != nil || fi.Mode().Perm()&0o111 == 0 {
					continue
				}
			default:
				continue // a device, fifo or socket is no hook
			}
			hooks = append(hooks, Hook{Name: n, Path: p})
		}
	}
	slices.SortFunc(hooks, func(a, b Hook) int { return strings.Compare(a.Name, b.Name) })
	return hooks, nil
}
