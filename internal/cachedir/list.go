package cachedir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Entry is one unit of a kind that can be removed alone.
type Entry struct {
	// Path is relative to Root, slash-separated ("kernel/src/<sha256>").
	Path string `json:"path"`
	// Size is the disk space it uses (allocated blocks, so sparse files
	// count what they hold), counting a hard-linked inode once per List.
	Size int64 `json:"size"`
	// LastUse is the entry's mtime: when a build last took it from the
	// cache (Touch) or stored it.
	LastUse time.Time `json:"last_use"`
}

// KindUsage is what one kind holds.
type KindUsage struct {
	Kind
	Entries []Entry `json:"entries"`
	// Size is the sum of the entries' sizes.
	Size int64 `json:"size"`
	// Oldest and Newest are the entries' earliest and latest last use;
	// zero without entries.
	Oldest time.Time `json:"oldest,omitzero"`
	Newest time.Time `json:"newest,omitzero"`
}

// Usage is what a cache root holds.
type Usage struct {
	Root  string      `json:"root"`
	Kinds []KindUsage `json:"kinds"`
	// Entries and Size are the totals over every kind.
	Entries int   `json:"entries"`
	Size    int64 `json:"size"`
	// Unknown are paths (relative to Root) that no kind claims: another
	// program's files, or an older mkimage's. They are not counted and
	// Prune leaves them alone.
	Unknown []string `json:"unknown,omitempty"`
}

// List reports every kind under root with its entries, in the order of
// Kinds; a missing root or kind directory has no entries. It first
// removes what an interrupted Prune left (".prune-*" names), which no
// reader ever opens.
func List(root string) (*Usage, error) {
	if st, err := os.Stat(root); err == nil && !st.IsDir() {
		return nil, fmt.Errorf("cache directory %s is a file; name the directory that holds apt/ and kernels/", root)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("cache directory: %w", err)
	}
	removeLeftovers(root)
	u := &Usage{Root: root}
	seen := map[inode]bool{}
	for _, k := range Kinds {
		ku := KindUsage{Kind: k, Entries: []Entry{}}
		for _, rel := range k.entries(root) {
			st, err := os.Lstat(filepath.Join(root, filepath.FromSlash(rel)))
			if err != nil {
				continue // removed since it was listed
			}
			e := Entry{Path: rel, Size: diskUsage(filepath.Join(root, filepath.FromSlash(rel)), seen), LastUse: st.ModTime()}
			ku.Entries = append(ku.Entries, e)
			ku.Size += e.Size
			if ku.Oldest.IsZero() || e.LastUse.Before(ku.Oldest) {
				ku.Oldest = e.LastUse
			}
			if e.LastUse.After(ku.Newest) {
				ku.Newest = e.LastUse
			}
		}
		u.Kinds = append(u.Kinds, ku)
		u.Entries += len(ku.Entries)
		u.Size += ku.Size
	}
	u.Unknown = unknown(root)
	return u, nil
}

// leftoverPrefix starts the name Prune gives an entry before removing it,
// so that an interrupted removal leaves nothing that looks like an entry.
const leftoverPrefix = ".prune-"

// entries returns the paths (relative to root) of the kind's entries:
// its globs' matches that are neither lock files nor prune leftovers.
func (k Kind) entries(root string) []string {
	var out []string
	for _, g := range k.Globs {
		for _, rel := range matches(root, g) {
			if !strings.HasPrefix(path.Base(rel), leftoverPrefix) && !k.isLock(rel) {
				out = append(out, rel)
			}
		}
	}
	return out
}

// matches returns what glob matches under root, by name. It reads the
// directory rather than calling filepath.Glob, so that a root whose path
// holds glob characters still works.
func matches(root, glob string) []string {
	dir, pat := path.Split(glob)
	ents, err := os.ReadDir(filepath.Join(root, filepath.FromSlash(dir)))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if ok, _ := path.Match(pat, e.Name()); ok {
			out = append(out, path.Join(dir, e.Name()))
		}
	}
	return out
}

// dirs returns every directory (relative to Root) that holds entries or
// such directories: ".", "apt", "apt/debs", "kernel", "kernel/src", ...
func dirs() map[string]bool {
	out := map[string]bool{}
	for _, k := range Kinds {
		for _, g := range k.Globs {
			for d := path.Dir(g); !out[d]; d = path.Dir(d) {
				out[d] = true
				if d == "." {
					break
				}
			}
		}
	}
	return out
}

// removeLeftovers removes what interrupted prunes left. Errors are left
// for the next try: a leftover is garbage whether or not it goes now.
func removeLeftovers(root string) {
	for d := range dirs() {
		ents, _ := os.ReadDir(filepath.Join(root, filepath.FromSlash(d)))
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), leftoverPrefix) {
				os.RemoveAll(filepath.Join(root, filepath.FromSlash(d), e.Name()))
			}
		}
	}
}

// unknown returns the paths in the directories of Kinds that no kind
// claims as an entry, a lock file or a directory of its own.
func unknown(root string) []string {
	ds := dirs()
	var out []string
	for d := range ds {
		ents, _ := os.ReadDir(filepath.Join(root, filepath.FromSlash(d)))
		for _, e := range ents {
			rel := path.Join(d, e.Name())
			if !ds[rel] && !claimed(rel) && !strings.HasPrefix(e.Name(), leftoverPrefix) {
				out = append(out, rel)
			}
		}
	}
	slices.Sort(out)
	return out
}

// claimed reports whether rel is an entry or lock file of some kind.
func claimed(rel string) bool {
	for _, k := range Kinds {
		if k.isLock(rel) {
			return true
		}
		for _, g := range k.Globs {
			if ok, _ := path.Match(g, rel); ok {
				return true
			}
		}
	}
	return false
}

type inode struct{ dev, ino uint64 }

// diskUsage returns the blocks allocated under p, skipping inodes already
// in seen (hard links). What vanishes or cannot be read while it walks is
// not counted: List must not fail because a build changed the cache.
func diskUsage(p string, seen map[inode]bool) int64 {
	var n int64
	filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d == nil {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			n += info.Size()
			return nil
		}
		if st.Nlink > 1 && !info.IsDir() {
			k := inode{uint64(st.Dev), uint64(st.Ino)}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		n += int64(st.Blocks) * 512
		return nil
	})
	return n
}
