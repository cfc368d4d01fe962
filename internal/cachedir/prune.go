package cachedir

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// MinAge is the shortest cutoff Prune takes. Builds Touch an entry when
// they take it from the cache and then use it for at most the length of
// one build (a kernel built from source on two cores, the longest, takes
// under an hour), so an entry unused for a day is not in use. That is
// what keeps entries of kinds without a lock safe from a running build.
const MinAge = 24 * time.Hour

// ErrTooRecent is what Prune returns for a cutoff under MinAge.
var ErrTooRecent = errors.New("under a day, which is the least, so that nothing a running build uses goes")

// Pruned is an entry Prune removed, or would remove in a dry run.
type Pruned struct {
	Kind string `json:"kind"`
	Entry
}

// PruneResult says what Prune did.
type PruneResult struct {
	Root   string    `json:"root"`
	Cutoff time.Time `json:"cutoff"`
	DryRun bool      `json:"dry_run"`
	// Removed are the entries last used before Cutoff, removed (or, in a
	// dry run, that would be), oldest use first within each kind.
	Removed []Pruned `json:"removed"`
	// Freed is the sum of their sizes.
	Freed int64 `json:"freed"`
	// InUse are entries old enough to go whose lock a build holds.
	InUse []string `json:"in_use,omitempty"`
	// Kept counts the entries used since Cutoff.
	Kept int `json:"kept"`
}

// Prune removes every entry of root last used more than olderThan ago,
// each whole: it is renamed to a ".prune-*" name in its directory, which
// no reader looks for, and then removed, so an interrupted prune leaves
// nothing that looks valid (List and Prune remove such leftovers). An
// entry whose kind has a lock is removed under that lock, and kept when a
// build holds it; every entry is looked at again just before it goes, so
// one a build took meanwhile stays. olderThan must be at least MinAge. A
// dry run reports the same without changing anything but leftovers.
func Prune(root string, olderThan time.Duration, dryRun bool) (*PruneResult, error) {
	if olderThan < MinAge {
		return nil, fmt.Errorf("age %s: %w (with no mkimage running, remove %s by hand to empty it)", olderThan, ErrTooRecent, root)
	}
	u, err := List(root)
	if err != nil {
		return nil, err
	}
	res := &PruneResult{Root: root, Cutoff: time.Now().Add(-olderThan), DryRun: dryRun, Removed: []Pruned{}}
	var errs []error
	for _, ku := range u.Kinds {
		for _, e := range oldestFirst(ku.Entries) {
			if !e.LastUse.Before(res.Cutoff) {
				res.Kept++
				continue
			}
			gone, inUse, err := pruneEntry(root, ku.Kind, e.Path, res.Cutoff, dryRun)
			switch {
			case err != nil:
				errs = append(errs, err)
			case inUse:
				res.InUse = append(res.InUse, e.Path)
			case gone:
				res.Removed = append(res.Removed, Pruned{Kind: ku.Name, Entry: e})
				res.Freed += e.Size
			default:
				res.Kept++ // used since it was listed
			}
		}
	}
	return res, errors.Join(errs...)
}

// pruneEntry removes the entry at rel (or, in a dry run, says it would)
// unless its lock is held or it was used since cutoff.
func pruneEntry(root string, k Kind, rel string, cutoff time.Time, dryRun bool) (gone, inUse bool, err error) {
	unlock, free, err := tryLock(root, k, rel, !dryRun)
	if err != nil || !free {
		return false, !free && err == nil, err
	}
	defer unlock()
	p := filepath.Join(root, filepath.FromSlash(rel))
	st, err := os.Lstat(p)
	if err != nil || !st.ModTime().Before(cutoff) {
		return false, false, nil // another prune took it, or a build used it
	}
	if dryRun {
		return true, false, nil
	}
	tmp := filepath.Join(filepath.Dir(p), fmt.Sprintf("%s%016x", leftoverPrefix, rand.Uint64()))
	if err := os.Rename(p, tmp); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, false, nil
		}
		return false, false, fmt.Errorf("prune %s: %w", p, err)
	}
	if err := os.RemoveAll(tmp); err != nil {
		return true, false, fmt.Errorf("prune %s (renamed to %s, which the next list or prune removes): %w", p, tmp, err)
	}
	return true, false, nil
}

// tryLock takes the kind's lock for the entry at rel without waiting.
// free is false when another process holds it. create makes the lock
// file when missing, so that a writer starting now waits for the prune;
// without it (a dry run) a missing lock file means nobody holds it.
func tryLock(root string, k Kind, rel string, create bool) (unlock func(), free bool, err error) {
	if k.Lock == "" {
		return func() {}, true, nil
	}
	lp := filepath.Join(root, filepath.FromSlash(k.lockFor(rel)))
	flag := os.O_RDONLY
	if create {
		flag |= os.O_CREATE
	}
	f, err := os.OpenFile(lp, flag, 0o644)
	if errors.Is(err, os.ErrNotExist) && !create {
		return func() {}, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("lock of %s: %w", rel, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("lock %s: %w", lp, err)
	}
	return func() { f.Close() }, true, nil // closing releases the lock
}

// oldestFirst returns the entries sorted by last use, oldest first.
func oldestFirst(es []Entry) []Entry {
	out := append([]Entry(nil), es...)
	slices.SortStableFunc(out, func(a, b Entry) int { return a.LastUse.Compare(b.LastUse) })
	return out
}
