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
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// File is a file being written under a temporary name. Commit puts it at
// its path; Abort (or a failed Commit) removes it.
type File struct {
	*os.File
	path string
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
	removeStale(path)
	for {
		f, err := os.CreateTemp(dir, tempPrefix(path)+"*")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, fmt.Errorf("%s: locking %s: %w", path, f.Name(), err)
		}
		// Another writer's removeStale may have taken the file for a
		// leftover before the lock: then its name is gone; start again.
		if named(f) {
			return &File{File: f, path: path, perm: perm}, nil
		}
		f.Close()
	}
}

// named reports whether f's name still refers to f.
func named(f *os.File) bool {
	st, err := f.Stat()
	if err != nil {
		return false
	}
	byName, err := os.Lstat(f.Name())
	return err == nil && os.SameFile(st, byName)
}

// removeStale removes path's temporaries whose writer is gone: a process
// that died, or a boot the power cut short. A temporary whose writer still
// holds its lock stays.
func removeStale(path string) {
	dir, prefix := filepath.Dir(path), tempPrefix(path)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil && named(f) {
			os.Remove(p)
		}
		f.Close()
	}
}

// Commit syncs the data, renames the file to its path and syncs the
// directory. On error the temporary file is removed and the path keeps
// its old content.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("%s: already committed or aborted", f.path)
	}
	err := f.Chmod(f.perm)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		// Renamed while still open, so still locked: unlocked, it
		// would look like a leftover to another writer.
		err = os.Rename(f.Name(), f.path)
	}
	if err != nil {
		f.Abort()
		return fmt.Errorf("%s: %w", f.path, err)
	}
	f.done = true
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s: %w", f.path, err)
	}
	return SyncDir(filepath.Dir(f.path))
}

// Abort removes the temporary file; after Commit it does nothing.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	os.Remove(f.Name())
	f.Close()
}

// WriteFile writes data to path atomically, creating path's directory
// when it is missing.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Abort()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Commit()
}

// WriteFileIfChanged is WriteFile, skipped when path already holds data
// (its mode is still set to perm, and leftover temporaries are still
// removed): policy applied at every boot must not wear the card by
// rewriting what did not change.
func WriteFileIfChanged(path string, data []byte, perm os.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
		removeStale(path)
		return os.Chmod(path, perm)
	}
	return WriteFile(path, data, perm)
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
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
