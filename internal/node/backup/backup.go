// Package backup takes a node's read-only btrfs snapshots off the node and
// brings them back. Export sends every local snapshot a target lacks over
// SSH, each incremental against the newest snapshot both sides hold, to a
// btrfs target (btrfs receive) or to any other filesystem as zstd stream
// files; Restore brings one back into a local directory. A cut transfer
// never leaves anything that passes for a complete snapshot, on either
// side: a received subvolume counts only once it has a Received UUID, a
// stream file only under its final name, given after its size and sha256
// were checked on the target.
//
// On the target, every command runs as one sh script under an flock on
// DIR/.backup.lock: a survey (stat -f -c %T DIR, then btrfs subvolume
// show of each entry, or the list of files), btrfs receive into DIR (then
// a check that NAME's Received UUID is the local snapshot's UUID), or cat
// into DIR/FILE.part followed by stat -c %s, sha256sum, sync and mv to
// FILE; deletions with btrfs subvolume delete or rm -f; restores with
// btrfs send DIR/NAME or cat of the chain's files.
//
// It runs the system's btrfs, ssh and zstd (the node has them for its
// snapshots; linking a zstd encoder would weigh on nodeinit's size), and
// needs on the target sh, stat, flock, sha256sum and btrfs-progs for a
// btrfs target.
package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/node/btrfsctl"
	"github.com/mkimage/mkimage/internal/shquote"
)

// Target is where snapshots go: a directory on a host reached over SSH.
type Target struct {
	Host       string // user@host
	Port       int    // 0: 22
	Identity   string // private key file
	KnownHosts string // the only host keys accepted
	Dir        string // absolute directory on the target

	control string // the ControlPath of a running master connection
}

func (t Target) String() string {
	port := t.Port
	if port == 0 {
		port = 22
	}
	return fmt.Sprintf("%s:%d:%s", t.Host, port, t.Dir)
}

func (t Target) check() error {
	switch {
	case t.Host == "" || strings.HasPrefix(t.Host, "-") || strings.ContainsAny(t.Host, " \t\n"):
		return fmt.Errorf("backup: target host %q: want user@host", t.Host)
	case !filepath.IsAbs(t.Dir):
		return fmt.Errorf("backup: target %s: directory must be absolute", t)
	case t.Identity == "" || t.KnownHosts == "":
		return fmt.Errorf("backup: target %s: an identity and a known_hosts file are required", t)
	}
	return nil
}

// Options says what to export, where, and how much the target keeps.
type Options struct {
	// SnapshotDir holds the node's read-only snapshots PREFIX-YYYYMMDD-HHMMSS.
	SnapshotDir string
	Prefix      string
	Target      Target
	// Keep is the target's retention: the newest Keep complete snapshots
	// stay, older ones are deleted after an export. 0 keeps all.
	Keep int
	// MaxChain bounds a file target's chains: a snapshot is sent in full
	// when its parent's chain already has MaxChain files, so retention can
	// drop old chains whole. 0 means Keep (unbounded when Keep is 0).
	MaxChain int
	// Log gets progress lines; nil discards them.
	Log func(format string, a ...any)
	// Progress, if set, is called as a snapshot's stream goes out with the
	// bytes sent so far (from another goroutine; it may cancel the
	// export's context).
	Progress func(name string, bytes int64)
}

// Sent is one snapshot an export sent.
type Sent struct {
	Name   string
	Parent string // "" for a full stream
	Bytes  int64  // btrfs send stream bytes
	Stored int64  // bytes written on the target (compressed for a file target)
	Took   time.Duration
}

// Mode is "full" or "incremental".
func (s Sent) Mode() string {
	if s.Parent == "" {
		return "full"
	}
	return "incremental"
}

// Summary is what an export did.
type Summary struct {
	Target  string
	Kind    Kind
	Sent    []Sent
	Cleaned []string // incomplete leftovers of cut transfers, deleted
	Pruned  []string // snapshots (btrfs) or stream files deleted by retention
}

type run struct {
	o   Options
	t   Target
	n   names
	log func(format string, a ...any)
}

func newRun(o Options) (*run, error) {
	if err := o.Target.check(); err != nil {
		return nil, err
	}
	n, err := newNames(o.Prefix)
	if err != nil {
		return nil, err
	}
	log := o.Log
	if log == nil {
		log = func(string, ...any) {}
	}
	return &run{o: o, t: o.Target, n: n, log: log}, nil
}

// local is one of the node's snapshots.
type local struct {
	name string
	uuid string
}

// locals lists the node's read-only snapshots of the prefix, oldest first.
func (e *run) locals() ([]local, error) {
	ents, err := os.ReadDir(e.o.SnapshotDir)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	var out []local
	for _, d := range ents {
		if !d.IsDir() || !e.n.re.MatchString(d.Name()) {
			continue
		}
		info, err := btrfsctl.Stat(filepath.Join(e.o.SnapshotDir, d.Name()))
		if err != nil {
			e.log("backup: %s: skipped: %v", d.Name(), err)
			continue
		}
		if !info.ReadOnly { // btrfs send takes only read-only ones
			e.log("backup: %s: skipped: not read-only", d.Name())
			continue
		}
		out = append(out, local{d.Name(), uuidString(info.UUID)})
	}
	return out, nil // ReadDir sorts by name: oldest first
}

func uuidString(u [16]byte) string {
	h := hex.EncodeToString(u[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// lockDir holds an flock on dir for one export at a time from this node
// (a timer firing while the last run still sends).
func lockDir(dir string) (func(), error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("backup: %s: another export runs: %w", dir, err)
	}
	return func() { f.Close() }, nil
}

// Export sends the local snapshots the target lacks, oldest first, then
// prunes the target to o.Keep. Snapshots older than the newest Keep of
// all (local and on the target) are not sent: retention would delete
// them at once.
func Export(ctx context.Context, o Options) (Summary, error) {
	e, err := newRun(o)
	if err != nil {
		return Summary{}, err
	}
	sum := Summary{Target: e.t.String()}
	unlock, err := lockDir(o.SnapshotDir)
	if err != nil {
		return sum, err
	}
	defer unlock()
	locs, err := e.locals()
	if err != nil {
		return sum, err
	}
	stop, err := e.master(ctx)
	if err != nil {
		return sum, err
	}
	defer stop()
	r, err := e.survey(ctx)
	if err != nil {
		return sum, err
	}
	sum.Kind = r.kind
	for _, n := range r.odd {
		e.log("backup: %s: %s is not a subvolume; left alone", e.t, n)
	}
	if len(r.incomplete) > 0 {
		if err := e.remove(ctx, r.kind, r.incomplete); err != nil {
			return sum, err
		}
		e.log("backup: %s: deleted incomplete %s", e.t, strings.Join(r.incomplete, " "))
		sum.Cleaned = r.incomplete
		r.incomplete = nil
	}

	for _, l := range locs {
		if u := r.received[l.name]; u != "" && u != l.uuid {
			e.log("backup: %s: %s there was received from another subvolume (%s, here %s); not a parent", e.t, l.name, u, l.uuid)
		}
	}
	held := map[string]bool{}
	for _, n := range r.complete() {
		held[n] = true
	}
	for _, n := range r.odd {
		held[n] = true // the name is taken: a receive would fail
	}
	// usable says whether a local snapshot can be a parent: the target
	// holds it, as a subvolume received from this very snapshot.
	usable := func(l local) bool {
		if !held[l.name] {
			return false
		}
		if r.kind == KindBtrfs {
			return r.received[l.name] == l.uuid
		}
		return true
	}
	todo := e.plan(locs, held)
	maxChain := o.MaxChain
	if maxChain == 0 {
		maxChain = o.Keep
	}
	for _, l := range todo {
		parent := ""
		for i := len(locs) - 1; i >= 0; i-- {
			if locs[i].name != l.name && usable(locs[i]) {
				parent = locs[i].name
				break
			}
		}
		if parent != "" && r.kind == KindFiles && maxChain > 0 && len(r.chain(parent)) >= maxChain {
			parent = ""
		}
		s, err := e.send(ctx, r.kind, l, parent)
		if err != nil {
			e.cleanupAfter(ctx, r.kind, l.name)
			return sum, err
		}
		sum.Sent = append(sum.Sent, s)
		held[l.name] = true
		if r.kind == KindBtrfs {
			r.received[l.name] = l.uuid
		} else {
			f := streamFile{file: fileName(l.name, parent), name: l.name, parent: parent}
			r.files[l.name] = append(r.files[l.name], f)
		}
	}
	if p := r.prunable(o.Keep); len(p) > 0 {
		if err := e.remove(ctx, r.kind, p); err != nil {
			return sum, err
		}
		e.log("backup: %s: pruned %s (keeping the newest %d)", e.t, strings.Join(p, " "), o.Keep)
		sum.Pruned = p
	}
	return sum, nil
}

// plan is the local snapshots to send, oldest first.
func (e *run) plan(locs []local, held map[string]bool) []local {
	all := map[string]bool{}
	for n := range held {
		all[n] = true
	}
	for _, l := range locs {
		all[l.name] = true
	}
	var names []string
	for n := range all {
		names = append(names, n)
	}
	oldest := ""
	if e.o.Keep > 0 && len(names) > e.o.Keep {
		sort.Strings(names)
		oldest = names[len(names)-e.o.Keep]
	}
	var out []local
	for _, l := range locs {
		if !held[l.name] && l.name >= oldest {
			out = append(out, l)
		}
	}
	return out
}

// send sends one snapshot, full or against parent.
func (e *run) send(ctx context.Context, kind Kind, l local, parent string) (Sent, error) {
	start := time.Now()
	snap := filepath.Join(e.o.SnapshotDir, l.name)
	sendArgv := []string{"btrfs", "send", "-q"}
	if parent != "" {
		sendArgv = append(sendArgv, "-p", filepath.Join(e.o.SnapshotDir, parent))
	}
	sendArgv = append(sendArgv, snap)
	raw := &counter{}
	if e.o.Progress != nil {
		raw.progress = func(n int64) { e.o.Progress(l.name, n) }
	}
	s := Sent{Name: l.name, Parent: parent}
	what := fmt.Sprintf("backup: %s (%s) to %s", l.name, s.Mode(), e.t)
	if parent != "" {
		what = fmt.Sprintf("backup: %s (incremental from %s) to %s", l.name, parent, e.t)
	}
	var err error
	switch kind {
	case KindBtrfs:
		// Receive in place, then check on the target that the new
		// subvolume carries this snapshot's UUID as its Received UUID:
		// btrfs receive sets it only at the stream's end.
		script := lockPrologue(e.t.Dir) +
			"btrfs receive -- . || exit $?\n" +
			"u=$(btrfs subvolume show -- " + shquote.Quote(l.name) + " | sed -n 's/^[[:space:]]*Received UUID:[[:space:]]*//p')\n" +
			"[ \"$u\" = " + shquote.Quote(l.uuid) + " ] || { echo \"" + l.name + ": Received UUID $u, want " + l.uuid + "\" >&2; exit 1; }\n"
		_, err = pipeline(ctx, stage{argv: sendArgv, tap: raw}, stage{argv: e.t.sshArgs(script)})
		s.Stored = raw.n
	case KindFiles:
		final := fileName(l.name, parent)
		part := final + ".part"
		packed := &counter{}
		h := sha256.New()
		_, err = pipeline(ctx,
			stage{argv: sendArgv, tap: raw},
			stage{argv: []string{"zstd", "-q", "-c", "-3"}, tap: multi{packed, h}},
			stage{argv: e.t.sshArgs(lockPrologue(e.t.Dir) + "cat > " + shquote.Quote(part) + "\n")})
		if err == nil {
			sum := hex.EncodeToString(h.Sum(nil))
			// The final name is the mark of a complete file: given only
			// once the size and sha256 on the target are the ones sent,
			// and the data is on disk.
			script := lockPrologue(e.t.Dir) +
				"s=$(stat -c %s -- " + shquote.Quote(part) + ") || exit 1\n" +
				"[ \"$s\" = " + strconv.FormatInt(packed.n, 10) + " ] || { echo \"" + part + ": $s bytes, sent " + strconv.FormatInt(packed.n, 10) + "\" >&2; exit 1; }\n" +
				"h=$(sha256sum < " + shquote.Quote(part) + ") || exit 1\n" +
				"[ \"${h%% *}\" = " + sum + " ] || { echo \"" + part + ": sha256 ${h%% *}, sent " + sum + "\" >&2; exit 1; }\n" +
				"sync -- " + shquote.Quote(part) + " && mv -- " + shquote.Quote(part) + " " + shquote.Quote(final) + " && sync -- .\n"
			_, err = pipeline(ctx, stage{argv: e.t.sshArgs(script)})
		}
		s.Stored = packed.n
	}
	if err != nil {
		if ctx.Err() != nil {
			return s, fmt.Errorf("%s: %w (%w)", what, ctx.Err(), err)
		}
		return s, fmt.Errorf("%s: %w", what, err)
	}
	s.Bytes = raw.n
	s.Took = time.Since(start)
	e.log("backup: %s -> %s: %s%s, %d stream bytes (%d stored) in %s",
		l.name, e.t, s.Mode(), fromParent(parent), s.Bytes, s.Stored, s.Took.Round(time.Millisecond))
	return s, nil
}

func fromParent(p string) string {
	if p == "" {
		return ""
	}
	return " from " + p
}

// multi writes to every writer (none of them fails).
type multi []interface{ Write([]byte) (int, error) }

func (m multi) Write(p []byte) (int, error) {
	for _, w := range m {
		w.Write(p)
	}
	return len(p), nil
}

// remove deletes subvolumes or files of the target (names relative to
// its directory).
func (e *run) remove(ctx context.Context, kind Kind, names []string) error {
	var quoted []string
	for _, n := range names {
		quoted = append(quoted, shquote.Quote(n))
	}
	cmd := "rm -f -- "
	if kind == KindBtrfs {
		cmd = "btrfs subvolume delete -- "
	}
	if _, err := pipeline(ctx, stage{argv: e.t.sshArgs(lockPrologue(e.t.Dir) + cmd + strings.Join(quoted, " ") + "\n")}); err != nil {
		return fmt.Errorf("backup: delete %s on %s: %w", strings.Join(names, " "), e.t, err)
	}
	return nil
}

// cleanupAfter deletes what a failed send left on the target, even when
// ctx was cancelled (with its own short deadline): the lock makes it wait
// for a receive that outlives its killed ssh. It is a courtesy; the next
// export's survey finds anything left and deletes it first.
func (e *run) cleanupAfter(ctx context.Context, kind Kind, name string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	r, err := e.survey(ctx)
	if err != nil {
		e.log("backup: %s: cleanup after %s: %v", e.t, name, err)
		return
	}
	if len(r.incomplete) == 0 {
		return
	}
	if err := e.remove(ctx, kind, r.incomplete); err != nil {
		e.log("backup: %s: cleanup after %s: %v", e.t, name, err)
		return
	}
	e.log("backup: %s: deleted incomplete %s after the failed send", e.t, strings.Join(r.incomplete, " "))
}

// Restore brings snapshot name back from the target into localDir (on
// btrfs) as a received read-only subvolume localDir/name. It refuses when
// localDir/name exists, unless that is a restore cut half way (a writable
// subvolume without Received UUID), which it deletes first.
func Restore(ctx context.Context, o Options, name, localDir string) (err error) {
	e, err := newRun(o)
	if err != nil {
		return err
	}
	if !e.n.re.MatchString(name) {
		return fmt.Errorf("backup: restore %q: not a snapshot name of prefix %s", name, o.Prefix)
	}
	if !btrfsctl.Is(localDir) {
		return fmt.Errorf("backup: restore %s: %s is not on btrfs", name, localDir)
	}
	dst := filepath.Join(localDir, name)
	if err := deleteIncomplete(dst, e.log); err != nil {
		return err
	}
	stop, err := e.master(ctx)
	if err != nil {
		return err
	}
	defer stop()
	r, err := e.survey(ctx)
	if err != nil {
		return err
	}
	what := fmt.Sprintf("backup: restore %s from %s into %s", name, e.t, localDir)
	defer func() {
		if err == nil {
			return
		}
		// Nothing from a failed restore stays under a snapshot's name.
		if _, serr := os.Lstat(dst); serr == nil {
			if derr := btrfsctl.Delete(dst); derr != nil {
				e.log("%s: %v", what, derr)
			}
		}
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
	}()
	switch r.kind {
	case KindBtrfs:
		if r.received[name] == "" {
			return fmt.Errorf("%s: the target holds no complete %s", what, name)
		}
		// A full send of the one snapshot: simplest, and needs nothing
		// local to be a parent.
		_, err = pipeline(ctx,
			stage{argv: e.t.sshArgs(lockPrologue(e.t.Dir) + "btrfs send -q -- " + shquote.Quote(name) + "\n")},
			stage{argv: []string{"btrfs", "receive", "--", localDir}})
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	case KindFiles:
		chain := r.chain(name)
		if chain == nil {
			return fmt.Errorf("%s: the target holds no complete chain of stream files for %s", what, name)
		}
		// The parents are received into a staging directory beside the
		// result and deleted after; btrfs receive finds each parent by
		// its Received UUID, wherever it is on the filesystem.
		stage1 := filepath.Join(localDir, ".restore-"+name)
		if err := clearStaging(stage1); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		defer func() {
			if cerr := clearStaging(stage1); cerr != nil {
				e.log("%s: %v", what, cerr)
			}
		}()
		if len(chain) > 1 {
			if err := os.Mkdir(stage1, 0o700); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			if err := e.replay(ctx, chain[:len(chain)-1], stage1); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
		}
		if err := e.replay(ctx, chain[len(chain)-1:], localDir); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	info, err := btrfsctl.Stat(dst)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !info.Received() || !info.ReadOnly {
		return fmt.Errorf("%s: %s came out without a Received UUID or writable: the stream was cut", what, dst)
	}
	e.log("backup: restored %s from %s into %s", name, e.t, localDir)
	return nil
}

// replay feeds stream files, in order, through zstd -d into btrfs
// receive: receive takes concatenated streams, zstd concatenated frames,
// and zstd checks each frame's checksum.
func (e *run) replay(ctx context.Context, files []streamFile, dir string) error {
	var quoted []string
	for _, f := range files {
		quoted = append(quoted, shquote.Quote(f.file))
	}
	_, err := pipeline(ctx,
		stage{argv: e.t.sshArgs(lockPrologue(e.t.Dir) + "cat -- " + strings.Join(quoted, " ") + "\n")},
		stage{argv: []string{"zstd", "-d", "-q", "-c"}},
		stage{argv: []string{"btrfs", "receive", "--", dir}})
	return err
}

// deleteIncomplete deletes p if it is a subvolume a cut receive left
// (writable, no Received UUID) and refuses anything else at p.
func deleteIncomplete(p string, log func(string, ...any)) error {
	if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	info, err := btrfsctl.Stat(p)
	if err != nil || info.Received() || info.ReadOnly {
		return fmt.Errorf("backup: restore: %s already exists; not overwriting it", p)
	}
	if err := btrfsctl.Delete(p); err != nil {
		return fmt.Errorf("backup: restore: deleting the incomplete %s a cut restore left: %w", p, err)
	}
	log("backup: deleted the incomplete %s a cut restore left", p)
	return nil
}

// clearStaging deletes a staging directory and the subvolumes in it.
func clearStaging(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, d := range ents {
		if err := btrfsctl.Delete(filepath.Join(dir, d.Name())); err != nil {
			return err
		}
	}
	return os.Remove(dir)
}

// List is the complete snapshots of o's prefix the target holds, oldest
// first.
func List(ctx context.Context, o Options) ([]string, Kind, error) {
	e, err := newRun(o)
	if err != nil {
		return nil, "", err
	}
	r, err := e.survey(ctx)
	if err != nil {
		return nil, "", err
	}
	return r.complete(), r.kind, nil
}
