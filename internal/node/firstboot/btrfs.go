package firstboot

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/mkimage/mkimage/internal/node/btrfsctl"
)

// ensureSubvolume makes root/rel a btrfs subvolume unless something is
// already there. On a non-btrfs root (tests) it makes a directory.
func ensureSubvolume(root, rel string) (created bool, err error) {
	p := filepath.Join(root, rel)
	if _, err := os.Lstat(p); err == nil {
		return false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	parent := filepath.Dir(p)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return false, err
	}
	if !btrfsctl.Is(parent) {
		return true, os.Mkdir(p, 0o755)
	}
	if err := btrfsctl.Create(p); err != nil {
		return false, err
	}
	return true, nil
}
