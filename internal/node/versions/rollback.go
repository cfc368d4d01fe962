package versions

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/atomicfile"
	"github.com/mkimage/mkimage/internal/node/btrfsctl"
)

// RollbackFile, in the node's state subvolume (/var/lib/mkimage in the
// root), asks the next boot to roll the running version's root back to a
// snapshot of it: RequestRollback writes it, Prepare carries it out.
const RollbackFile = "rollback.json"

// rolledBackMarker, at the top of a live root made by a rollback, names
// the request that made it, so a boot cut short after the exchange
// finishes that request instead of rolling back again.
const rolledBackMarker = ".mkimage-rolled-back"

// Rollback is a pending rollback.
type Rollback struct {
	// Snapshot is the snapshot's path in the snapshots' state subvolume
	// (the root's /.snapshots), e.g. "root-20261203-033000".
	Snapshot string `json:"snapshot"`
	UUID     string `json:"uuid"`    // the snapshot's, checked again at boot
	Version  string `json:"version"` // the version it is of
	ID       string `json:"id"`      // this request's, in the marker
}

// VersionFile, in every live root (and so in every snapshot of one),
// names the version it belongs to: Prepare writes it at every boot.
const VersionFile = "etc/mkimage/version"

// RequestRollback, run in a booted versioned root (live: "/"), asks the
// next boot to make the running version's root what snapshot (a path in
// snapshots, the root's /.snapshots, or one restored there) holds. Only
// a read-only snapshot of this version's root is taken (VersionFile): one
// of another version's root would put its files under this version's
// kernel and modules (roll the version back instead). nodeState is the
// root's /var/lib/mkimage. Nothing changes before the reboot; a new
// request replaces an older one.
func RequestRollback(live, snapshots, nodeState, snapshot string) (Rollback, error) {
	rel, err := filepath.Rel(snapshots, filepath.Join(snapshots, snapshot))
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return Rollback{}, fmt.Errorf("snapshot %q: want a snapshot under %s", snapshot, snapshots)
	}
	cur, err := os.ReadFile(filepath.Join(live, VersionFile))
	if err != nil {
		return Rollback{}, fmt.Errorf("the running root's version: %w", err)
	}
	snap, err := btrfsctl.Stat(filepath.Join(snapshots, rel))
	if err != nil {
		return Rollback{}, fmt.Errorf("snapshot %s: %w", rel, err)
	}
	if !snap.ReadOnly {
		return Rollback{}, fmt.Errorf("snapshot %s is writable: not a snapshot the schedule took", rel)
	}
	of, err := os.ReadFile(filepath.Join(snapshots, rel, VersionFile))
	if err != nil || string(of) != string(cur) {
		return Rollback{}, fmt.Errorf("snapshot %s is not of this version's root (%s: %q, running %q): copy files out of it instead, or roll the version back (nodeinit update)",
			rel, VersionFile, strings.TrimSpace(string(of)), strings.TrimSpace(string(cur)))
	}
	r := Rollback{Snapshot: rel, UUID: hex.EncodeToString(snap.UUID[:]), Version: strings.TrimSpace(string(cur)), ID: fmt.Sprintf("%d", time.Now().UnixNano())}
	data, _ := json.Marshal(r)
	if err := atomicfile.WriteFile(filepath.Join(nodeState, RollbackFile), append(data, '\n'), 0o600); err != nil {
		return Rollback{}, err
	}
	return r, nil
}

// BeforeRollback is where a rollback keeps the root it replaced, beside
// the live root (relative to the top level), until removed by hand.
func BeforeRollback(id string, r Rollback) string {
	return LiveDir + "/" + id + ".before-rollback-" + r.ID
}

// rollback carries out a pending RollbackFile on the top level top for
// version id's live root: a writable snapshot of the requested snapshot
// is made beside it and exchanged with it in one rename; the root
// before stays as BeforeRollback. A power cut at any step leaves the
// live root whole, the old or the new one, and the next boot finishes.
// A request that can no longer apply (its snapshot gone or replaced) is
// logged and dropped: the node boots its root as it is.
func rollback(top, id string, logf func(string, ...any)) error {
	reqPath := filepath.Join(top, StateDir, "node", RollbackFile)
	data, err := os.ReadFile(reqPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	drop := func(why error) error {
		logf("version %s: rollback not done, the root boots as it is: %v", id, why)
		return os.Remove(reqPath)
	}
	var r Rollback
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, &r); err != nil || r.ID == "" || strings.ContainsAny(r.ID, "/.") {
		return drop(fmt.Errorf("%s: %v", reqPath, err))
	}
	live := filepath.Join(top, LiveDir, id)
	next := live + ".rollback"
	done := func() error {
		if err := os.Rename(next, filepath.Join(top, BeforeRollback(id, r))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := os.Remove(reqPath); err != nil {
			return err
		}
		os.Remove(filepath.Join(live, rolledBackMarker))
		atomicfile.SyncDir(filepath.Dir(reqPath))
		logf("version %s: root rolled back to snapshot %s; the root before is %s", id, r.Snapshot, BeforeRollback(id, r))
		return nil
	}
	if m, err := os.ReadFile(filepath.Join(live, rolledBackMarker)); err == nil && string(m) == r.ID {
		return done() // cut after the exchange
	}
	snapPath := filepath.Join(top, StateDir, "snapshots", r.Snapshot)
	snap, err := btrfsctl.Stat(snapPath)
	if err != nil {
		return drop(err)
	}
	if hex.EncodeToString(snap.UUID[:]) != r.UUID {
		return drop(fmt.Errorf("snapshot %s is not the one asked for", r.Snapshot))
	}
	// Booting another version than the request was made in (an update
	// came between) must not take the other version's files.
	if of, _ := os.ReadFile(filepath.Join(snapPath, VersionFile)); string(of) != id+"\n" {
		return drop(fmt.Errorf("snapshot %s is of version %q, this boot is version %s", r.Snapshot, strings.TrimSpace(string(of)), id))
	}
	if _, err := os.Lstat(next); err == nil {
		if err := btrfsctl.Delete(next); err != nil {
			return fmt.Errorf("deleting what a cut rollback left: %w", err)
		}
	}
	cut("snapshot")
	if err := btrfsctl.Snapshot(snapPath, next, false); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(next, rolledBackMarker), []byte(r.ID), 0o600); err != nil {
		return err
	}
	if err := atomicfile.SyncFS(next); err != nil {
		return err
	}
	cut("exchange")
	if err := atomicfile.Exchange(next, live); err != nil {
		return err
	}
	cut("exchanged")
	return done()
}

// cut is where tests stop a rollback as a power cut would.
var cut = func(step string) {}
