// Package atomicfile writes files so that after a crash or a power cut a
// path holds its old content or its new one, never a mix and never
// nothing: the data goes to a temporary file beside the path, which is
// synced, renamed over the path, and the directory is synced so the
// rename itself survives. It is the one rule for the build host's outputs
// and the node's state and policy files (a node's power can be cut at any
// moment; 46 of them share one supply).
//
// A power cut between creating the temporary file and the directory sync
// can leave the temporary behind under its random name, complete or not.
// The next write of the same path removes it, so a node whose first boot
// was cut and redone holds exactly the files of an uninterrupted one.
// Each writer holds an flock on its temporary until it is renamed, so a
// temporary that another writer (another process, another goroutine) is
// still writing is never taken for a leftover.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// File is a file being written under a temporary name. Commit puts it at
// its path; Abort (or a failed Commit) removes it. Every name is
// resolved in root (the path's directory, or the tree CreateIn was
// given), so nothing is written through a symlink out of it.
type File struct {
	*os.File
	root *os.Root
	own  bool   // root was opened for this file and is closed with it
	name string // the path, in root
	tmp  string // the temporary, in root
	perm os.FileMode
	done bool
}

// tempPrefix starts the names of path's temporary files.
func tempPrefix(path string) string { return "." + filepath.Base(path) + ".tmp-" }

// Create starts a file for path in path's directory, which must exist,
// after removing the temporaries an interrupted writer of path left.
func Create(path string, perm os.FileMode) (*File, error) {
	dir := filepath.Dir(path)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%s: directory %s does not exist", path, dir)
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f, err := CreateIn(r, filepath.Base(path), perm)
	if err != nil {
		r.Close()
		return nil, err
	}
	f.own = true
	return f, nil
}

// CreateIn is Create for name in the tree r, for trees another party
// controls (a container's root): neither name nor its temporary resolve
// through a symlink out of r. name's directory must exist.
func CreateIn(r *os.Root, name string, perm os.FileMode) (*File, error) {
	removeStale(r, name)
	for {
		tmp := filepath.Join(filepath.Dir(name), tempPrefix(name)+strconv.FormatUint(rand.Uint64(), 36))
		f, err := r.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(r.Name(), name), err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			f.Close()
			r.Remove(tmp)
			return nil, fmt.Errorf("%s: locking %s: %w", filepath.Join(r.Name(), name), tmp, err)
		}
		// Another writer's removeStale may have taken the file for a
		// leftover before the lock: then its name is gone; start again.
		if named(r, f, tmp) {
			return &File{File: f, root: r, name: name, tmp: tmp, perm: perm}, nil
		}
		f.Close()
	}
}

// named reports whether f's name tmp in r still refers to f.
func named(r *os.Root, f *os.File, tmp string) bool {
	st, err := f.Stat()
	if err != nil {
		return false
	}
	byName, err := r.Lstat(tmp)
	return err == nil && os.SameFile(st, byName)
}

// removeStale removes name's temporaries whose writer is gone: a process
// that died, or a boot the power cut short. A temporary whose writer still
// holds its lock stays.
func removeStale(r *os.Root, name string) {
	dir, prefix := filepath.Dir(name), tempPrefix(name)
	d, err := r.Open(dir)
	if err != nil {
		return
	}
	ents, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		f, err := r.OpenFile(p, os.O_RDONLY, 0)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil && named(r, f, p) {
			r.Remove(p)
		}
		f.Close()
	}
}

// Commit syncs the data, renames the file to its path and syncs the
// directory. On error the temporary file is removed and the path keeps
// its old content.
func (f *File) Commit() error { return f.commit(f.root.Rename) }

// commit puts the synced file at its path with place (a rename, or a
// link that refuses an existing path), both names in f.root.
func (f *File) commit(place func(tmp, name string) error) error {
	path := filepath.Join(f.root.Name(), f.name)
	if f.done {
		return fmt.Errorf("%s: already committed or aborted", path)
	}
	err := f.Chmod(f.perm)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		// Placed while still open, so still locked: unlocked, it
		// would look like a leftover to another writer.
		err = place(f.tmp, f.name)
	}
	if err != nil {
		f.Abort()
		return fmt.Errorf("%s: %w", path, err)
	}
	f.done = true
	defer f.closeRoot()
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return syncDirIn(f.root, filepath.Dir(f.name))
}

// Abort removes the temporary file; after Commit it does nothing.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.root.Remove(f.tmp)
	f.Close()
	f.closeRoot()
}

func (f *File) closeRoot() {
	if f.own {
		f.root.Close()
	}
}

// inDir runs fn on path's base name in a root opened at path's directory.
func inDir(path string, fn func(r *os.Root, name string) error) error {
	r, err := os.OpenRoot(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer r.Close()
	return fn(r, filepath.Base(path))
}

// WriteFile writes data to path atomically, creating path's directory
// when it is missing.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return inDir(path, func(r *os.Root, name string) error { return WriteFileIn(r, name, data, perm) })
}

// WriteFileIn is WriteFile for name in the tree r (see CreateIn).
func WriteFileIn(r *os.Root, name string, data []byte, perm os.FileMode) error {
	if err := r.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	return write(r, name, data, perm, r.Rename)
}

// write writes data to a temporary file for name and commits it with
// place.
func write(r *os.Root, name string, data []byte, perm os.FileMode, place func(tmp, name string) error) error {
	f, err := CreateIn(r, name, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Abort()
		return fmt.Errorf("%s: %w", filepath.Join(r.Name(), name), err)
	}
	return f.commit(place)
}

// WriteNewFile is WriteFile for a path that must not exist yet: it fails
// with an error matching fs.ErrExist, and leaves the existing file alone,
// when it does (a hard link, unlike a rename, never replaces a file, so
// there is no window between checking and writing). For files a user
// would lose by an overwrite, such as a signing key.
func WriteNewFile(path string, data []byte, perm os.FileMode) error {
	return inDir(path, func(r *os.Root, name string) error { return WriteNewFileIn(r, name, data, perm) })
}

// WriteNewFileIn is WriteNewFile for name in the tree r (see CreateIn);
// name's directory must exist.
func WriteNewFileIn(r *os.Root, name string, data []byte, perm os.FileMode) error {
	return write(r, name, data, perm, func(tmp, name string) error {
		if err := r.Link(tmp, name); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%w; refusing to replace it", fs.ErrExist)
			}
			return err
		}
		return r.Remove(tmp)
	})
}

// WriteFileIfChanged is WriteFile, skipped when path already holds data
// (its mode is still set to perm, and leftover temporaries are still
// removed): policy applied at every boot must not wear the card by
// rewriting what did not change.
func WriteFileIfChanged(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return inDir(path, func(r *os.Root, name string) error { return WriteFileIfChangedIn(r, name, data, perm) })
}

// WriteFileIfChangedIn is WriteFileIfChanged for name in the tree r (see
// CreateIn). A symlink at name is replaced, never followed.
func WriteFileIfChangedIn(r *os.Root, name string, data []byte, perm os.FileMode) error {
	if fi, err := r.Lstat(name); err == nil && fi.Mode().IsRegular() {
		if old, err := r.ReadFile(name); err == nil && string(old) == string(data) {
			removeStale(r, name)
			return r.Chmod(name, perm)
		}
	}
	return WriteFileIn(r, name, data, perm)
}

// Symlink points path at target atomically (a new link renamed over it).
func Symlink(target, path string) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp-link")
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir syncs a directory, so renames and new entries in it are on disk.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return syncDir(d, dir)
}

// syncDirIn is SyncDir for dir in the tree r.
func syncDirIn(r *os.Root, dir string) error {
	d, err := r.Open(dir)
	if err != nil {
		return err
	}
	return syncDir(d, filepath.Join(r.Name(), dir))
}

func syncDir(d *os.File, name string) error {
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", name, err)
	}
	return nil
}

// ReplaceDir makes dir a directory holding what fill writes, all or
// nothing: fill writes into a new temporary directory beside dir, which
// takes dir's place once fill returns nil; on an error it is removed and
// dir is left as it was. An existing dir is replaced as a whole only if it
// holds the file marker, the sign of an earlier output of the same kind
// (kind names it in errors, e.g. "a netboot tree"): anything else there is
// refused, so a mistyped output path never deletes someone's directory.
// fill is responsible for syncing the files it writes.
func ReplaceDir(dir, kind, marker string, fill func(tmp string) error) (err error) {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("output %s exists and is not a directory", dir)
		}
		if _, err := os.Stat(filepath.Join(dir, marker)); err != nil {
			return fmt.Errorf("output %s exists and is not %s (no %s); remove it or pick another output", dir, kind, marker)
		}
	}
	parent := filepath.Dir(filepath.Clean(dir))
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := fill(tmp); err != nil {
		return err
	}
	if err := SyncDir(tmp); err != nil {
		return err
	}
	// Replace an earlier output: move it aside, move ours in, drop the old.
	old := ""
	if _, err := os.Stat(dir); err == nil {
		old = tmp + ".old"
		if err := os.Rename(dir, old); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		if old != "" {
			os.Rename(old, dir)
		}
		return err
	}
	if old != "" {
		os.RemoveAll(old)
	}
	return SyncDir(parent)
}

// SyncFS syncs the whole filesystem dir is on: for trees written by
// other programs (cp, btrfs receive), whose files were never synced one
// by one.
func SyncFS(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// Exchange swaps the paths a and b (files or directories on one
// filesystem) in one step, so a power cut leaves each name with one of
// the two, never neither, and syncs their directories. If b does not
// exist, a is renamed to b.
func Exchange(a, b string) error {
	err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.ENOENT) {
		if _, serr := os.Lstat(a); serr == nil {
			err = os.Rename(a, b)
		}
	}
	if err != nil {
		return fmt.Errorf("exchange %s and %s: %w", a, b, err)
	}
	if err := SyncDir(filepath.Dir(a)); err != nil {
		return err
	}
	if filepath.Dir(a) != filepath.Dir(b) {
		return SyncDir(filepath.Dir(b))
	}
	return nil
}
