// Package versions is the node's side of versioned roots. A card built for
// updates holds, at the top of its btrfs filesystem:
//
//	roots/<id>   each version's root as built or received: read-only,
//	             never changed, the parent an incremental update names
//	live/<id>    the root a version runs on: a writable snapshot of
//	             roots/<id>, made the first time that version boots
//	state/<name> what outlives versions, mounted into every live root:
//	             containers, snapshots, home directories, node identity
//
// U-Boot's counting boot script picks the version and names it on the
// kernel command line (mkimage.version=<id>); Mount makes the live root
// and mounts it with the state subvolumes in place. Kernel, initramfs and
// device tree of a version sit in its directory on FAT (package
// bootstate), so all four switch together.
package versions

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/atomicfile"
	"github.com/mkimage/mkimage/internal/bootstate"
	"github.com/mkimage/mkimage/internal/node/btrfsctl"
	"github.com/mkimage/mkimage/internal/node/rootdev"
)

// Top-level directories of the root filesystem.
const (
	RootsDir = "roots"
	LiveDir  = "live"
	StateDir = "state"
)

// StateMount is a state subvolume and where a live root sees it.
type StateMount struct {
	Subvol string // under StateDir
	Path   string // in the root
}

// State are the subvolumes every live root mounts. "node" holds the
// identity a new version's first boot takes over (see Carry).
var State = []StateMount{
	{"lxc", "var/lib/lxc"},
	{"snapshots", ".snapshots"},
	{"home", "home"},
	{"node", "var/lib/mkimage"},
}

// Mount mounts version id's live root from dev on dir. topDir is an empty
// directory where the filesystem's top level is mounted meanwhile. The
// live root is made from roots/<id> if this is the version's first boot;
// missing state subvolumes are created. rootflags apply to every mount
// (a subvol= in them is replaced).
func Mount(dev, fstype, rootflags, id, topDir, dir string, logf func(string, ...any)) error {
	if err := bootstate.ValidID(id); err != nil {
		return fmt.Errorf("%s=: %w", bootstate.CmdlineKey, err)
	}
	flags, data := rootdev.MountOptions(rootflags)
	with := func(opt string) string {
		if data == "" {
			return opt
		}
		return data + "," + opt
	}
	if err := os.MkdirAll(topDir, 0o700); err != nil {
		return err
	}
	// The top level is mounted read-write whatever rootflags say: the
	// first boot of a version makes its live snapshot there.
	if err := unix.Mount(dev, topDir, fstype, flags&^unix.MS_RDONLY, with("subvolid=5")); err != nil {
		return fmt.Errorf("mount %s (top level) on %s: %w", dev, topDir, err)
	}
	defer unix.Unmount(topDir, 0)
	live, err := Prepare(topDir, id, logf)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(dev, dir, fstype, flags, with("subvol="+live)); err != nil {
		return fmt.Errorf("mount %s subvol=%s on %s: %w", dev, live, dir, err)
	}
	for _, s := range State {
		p := filepath.Join(dir, s.Path)
		if err := os.MkdirAll(p, 0o755); err != nil && !errors.Is(err, unix.EROFS) {
			return fmt.Errorf("%s: %w", p, err)
		}
		sub := StateDir + "/" + s.Subvol
		if err := unix.Mount(dev, p, fstype, flags&^unix.MS_RDONLY, with("subvol="+sub)); err != nil {
			return fmt.Errorf("mount %s subvol=%s on %s: %w", dev, sub, p, err)
		}
	}
	logf("version %s: mounted %s on %s with %d state subvolumes", id, live, dir, len(State))
	return nil
}

// Prepare, on the mounted top level top, makes sure version id can boot:
// roots/<id> is a read-only subvolume, live/<id> exists (a writable
// snapshot of it, made now on the version's first boot; rolled back to
// a snapshot first when RollbackFile asks) and the state subvolumes
// exist. It returns live/<id>, relative to top. Repeating it
// changes nothing; a power cut during it leaves either no live root or a
// whole one (a snapshot is one transaction).
func Prepare(top, id string, logf func(string, ...any)) (string, error) {
	root := filepath.Join(top, RootsDir, id)
	info, err := btrfsctl.Stat(root)
	if err != nil {
		return "", fmt.Errorf("version %s is not on this card: %w", id, err)
	}
	if !info.ReadOnly {
		return "", fmt.Errorf("%s/%s is writable: a version's root must be read-only", RootsDir, id)
	}
	live := LiveDir + "/" + id
	if _, err := btrfsctl.Stat(filepath.Join(top, live)); err != nil {
		if err := os.MkdirAll(filepath.Join(top, LiveDir), 0o755); err != nil {
			return "", err
		}
		if err := btrfsctl.Snapshot(root, filepath.Join(top, live), false); err != nil {
			return "", err
		}
		logf("version %s: first boot: %s made from %s/%s", id, live, RootsDir, id)
	}
	if err := rollback(top, id, logf); err != nil {
		logf("version %s: rollback: %v; the root boots as it is", id, err)
	}
	// Snapshots of the root carry it: a rollback takes only this
	// version's.
	if err := atomicfile.WriteFileIfChanged(filepath.Join(top, live, VersionFile), []byte(id+"\n"), 0o644); err != nil {
		return "", err
	}
	for _, s := range State {
		p := filepath.Join(top, StateDir, s.Subvol)
		if _, err := btrfsctl.Stat(p); err == nil {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", err
		}
		if err := btrfsctl.Create(p); err != nil {
			return "", err
		}
	}
	rootdev.Sync(top)
	return live, nil
}
