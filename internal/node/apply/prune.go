package apply

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/mkimage/mkimage/internal/bootstate"
	"github.com/mkimage/mkimage/internal/node/btrfsctl"
	"github.com/mkimage/mkimage/internal/node/versions"
)

// Commit makes running the good version if it is the version being
// tried (call it once the tried version passed its checks). Running the
// good version already, or a fallback from a try, changes nothing.
func Commit(boot, running string) error {
	st, err := bootstate.Read(boot)
	if err != nil {
		return fmt.Errorf("boot state on %s: %w", boot, err)
	}
	if !st.Booted(running).Trying() {
		return nil
	}
	if err := bootstate.Write(boot, st.Commit()); err != nil {
		return fmt.Errorf("committing version %s: %w", running, err)
	}
	return nil
}

// Prune deletes the versions that are neither good, nor tried, nor
// running (roots/<id>, live/<id>, the boot directory v/<id> and the
// record), oldest first by recorded creation time (a version without a
// record, the card's first, counts as oldest), keeping the keep most
// recent of them. Each version's boot.env goes first, so a cut prune
// never leaves a bootable version without its root. Errors are collected;
// the other versions are still pruned.
func Prune(top, boot, running string, keep int, log func(format string, a ...any)) error {
	if log == nil {
		log = func(string, ...any) {}
	}
	st, err := bootstate.Read(boot)
	if err != nil {
		return fmt.Errorf("boot state on %s: %w", boot, err)
	}
	protected := map[string]bool{st.Good: true, st.Try: true, running: true}
	seen := map[string]bool{}
	for _, dir := range []string{filepath.Join(top, versions.RootsDir), filepath.Join(top, versions.LiveDir), filepath.Join(boot, bootstate.VersionsDir)} {
		ents, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		for _, e := range ents {
			if bootstate.ValidID(e.Name()) == nil && !protected[e.Name()] {
				seen[e.Name()] = true
			}
		}
	}
	type cand struct {
		id      string
		created int64
	}
	var cs []cand
	for id := range seen {
		c := cand{id: id, created: -1}
		if m, err := ReadRecord(top, id); err == nil {
			c.created = m.Created
		}
		cs = append(cs, c)
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].created != cs[j].created {
			return cs[i].created < cs[j].created
		}
		return cs[i].id < cs[j].id
	})
	if keep < 0 {
		keep = 0
	}
	var errs []error
	for i := 0; i < len(cs)-keep; i++ {
		id := cs[i].id
		log("pruning version %s", id)
		if err := pruneOne(top, boot, id); err != nil {
			errs = append(errs, fmt.Errorf("pruning version %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

func pruneOne(top, boot, id string) error {
	vdir := filepath.Join(boot, bootstate.VersionDir(id))
	if err := os.Remove(filepath.Join(vdir, bootstate.BootEnvFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, sub := range []string{versions.LiveDir, versions.RootsDir} {
		p := filepath.Join(top, sub, id)
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := btrfsctl.Delete(p); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(vdir); err != nil {
		return err
	}
	// The .bad record stays: a bad version is still refused if offered
	// again.
	if err := os.Remove(filepath.Join(top, RecordsDir, id+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
