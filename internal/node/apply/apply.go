// Package apply installs an update bundle on a running node: it fetches
// (from a bundle directory over HTTP or a bundle in an OCI registry,
// source.go) and verifies the signed manifest, downloads the root stream (an
// incremental one when the node holds its parent) and the boot files,
// receives the root into roots/<id>, writes the version's boot directory
// on FAT and marks the version to be tried on the next boot (package
// bootstate: U-Boot's counting boot script). Commit makes a tried
// version good; Prune drops versions that are neither good nor tried nor
// running.
//
// Every step is safe to interrupt (power cut, dropped network, full
// disk): what an earlier call left half done is found and redone by the
// next, and nothing the running version boots from is touched. The
// version only becomes bootable with the last write of its boot
// directory (boot.env, which U-Boot looks for) and only becomes the one
// U-Boot tries with the state file's rewrite, after everything else is
// on disk.
//
// The updater runs this from the node's Debian root, where btrfs-progs
// provides `btrfs receive`.
package apply

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/mkimage/mkimage/internal/atomicfile"
	"github.com/mkimage/mkimage/internal/bootstate"
	"github.com/mkimage/mkimage/internal/filehash"
	"github.com/mkimage/mkimage/internal/node/btrfsctl"
	"github.com/mkimage/mkimage/internal/node/netfetch"
	"github.com/mkimage/mkimage/internal/node/versions"
	"github.com/mkimage/mkimage/internal/update"
	"github.com/mkimage/mkimage/internal/update/registry"
)

// RecordsDir is where, under the top level, the node keeps the manifest
// of each version it applied (<id>.json) and the versions it found bad
// (<id>.bad). It is in the node's state subvolume, so every version sees
// the same records.
const RecordsDir = versions.StateDir + "/node/versions"

// Refusals, besides the update.ErrInvalid of a bundle that is wrong.
var (
	ErrOtherBoard = errors.New("bundle is for another board")
	ErrRunning    = errors.New("version is already running")
	ErrOlder      = errors.New("version is older than the running one")
	ErrBad        = errors.New("version is recorded as bad")
	ErrNotWanted  = errors.New("bundle is not the version asked for")
)

// Options says what to apply and where.
type Options struct {
	// Source is the base URL of the bundle directory (manifest.json,
	// manifest.sig and the payloads beside them), or oci://REF for a
	// bundle in an OCI registry (package registry; https unless the
	// registry is on loopback; oci+http://REF: plain HTTP).
	Source string
	// Credentials log in to an oci:// Source's registry (nil: anonymous).
	Credentials registry.Credentials
	// Top is the mounted top level of the root btrfs filesystem.
	Top string
	// Boot is the mounted FAT boot partition.
	Boot string
	// Incoming is a directory on the root filesystem for downloads (e.g.
	// Top/state/node/incoming); Apply keeps Incoming/<id>/ while it works.
	Incoming string
	// Keys are the trusted keys the manifest must be signed by.
	Keys []update.PublicKey
	// Board is this node's board name; a bundle for another is refused.
	Board string
	// Running is the version id now booted.
	Running string
	// AllowOlder accepts a version created before the running one.
	AllowOlder bool
	// Retry accepts a version recorded as bad (it failed its tries).
	Retry bool
	// Want, if set, is the only version id taken (a channel's): a
	// source holding another is refused before anything is written.
	Want string
	// Log, if set, is told each step.
	Log func(format string, a ...any)
	// Carry gives the new version's writable root (its second argument)
	// the node identity of the running version's (its first): the
	// updater passes firstboot.Carry. Nil carries nothing.
	Carry func(from, to string) error
	// Fetcher downloads the payloads (its retries and stall timeout
	// apply); nil is a Fetcher with the defaults.
	Fetcher *netfetch.Fetcher
}

// Result is what Apply did.
type Result struct {
	ID string // the version applied
	// Parent is the version whose root the incremental stream applied
	// to, "" when the full stream was received.
	Parent string
	// Bytes is what this call downloaded: payloads already whole in
	// Incoming, and the part of one an earlier call fetched, not counted.
	Bytes int64
	Full  bool // the full root stream was received
}

func (o *Options) logf(format string, a ...any) {
	if o.Log != nil {
		o.Log(format, a...)
	}
}

// Apply installs the bundle at o.Source so that the next boot tries it.
// See the package comment for the steps. Refusals (wrong signature,
// board, an older, running or bad version) write nothing.
func Apply(ctx context.Context, o Options) (Result, error) {
	if o.Fetcher == nil {
		o.Fetcher = &netfetch.Fetcher{Log: o.Log}
	}
	if err := bootstate.ValidID(o.Running); err != nil {
		return Result{}, fmt.Errorf("running version: %w", err)
	}
	if o.Source == "" || o.Top == "" || o.Boot == "" || o.Incoming == "" {
		return Result{}, fmt.Errorf("apply: Source %q, Top %q, Boot %q and Incoming %q must all be given", o.Source, o.Top, o.Boot, o.Incoming)
	}
	src, err := o.source()
	if err != nil {
		return Result{}, err
	}
	fetcher := *o.Fetcher
	fetcher.Client = src.client()

	// 1. The manifest, checked before anything is written.
	mb, m, err := src.manifest(ctx, o.Keys)
	if err != nil {
		return Result{}, err
	}
	st, err := bootstate.Read(o.Boot)
	if err != nil {
		return Result{}, fmt.Errorf("boot state on %s: %w", o.Boot, err)
	}
	if err := o.check(m, st); err != nil {
		return Result{}, fmt.Errorf("%s: version %s: %w", o.Source, m.ID, err)
	}
	res := Result{ID: m.ID}
	o.logf("applying version %s (board %s) from %s", m.ID, m.Board, o.Source)

	// Downloads of other versions are what an abandoned update left:
	// they only take space this one may need.
	o.cleanIncoming(m.ID)
	incoming := filepath.Join(o.Incoming, m.ID)

	// 2. The root payload, unless an earlier call already received it.
	rootDir := filepath.Join(o.Top, versions.RootsDir, m.ID)
	done, err := received(rootDir, m.ID)
	if err != nil {
		return res, fmt.Errorf("version %s: %w (whatever is at %s is not the version's root: remove it and run again)", m.ID, err, rootDir)
	}
	var need []update.Payload
	bootSrc := map[string]string{} // by payload name: where each boot file to write comes from
	var root update.Payload
	if !done {
		root, err = o.chooseRoot(m)
		if err != nil {
			return res, err
		}
		res.Parent, res.Full = root.Parent, root.Kind == update.KindRootFull
		need = append(need, root)
	} else {
		o.logf("version %s: %s/%s already received", m.ID, versions.RootsDir, m.ID)
	}
	vdir := filepath.Join(o.Boot, bootstate.VersionDir(m.ID))
	for _, p := range m.Payloads {
		if p.Kind != update.KindBoot {
			continue
		}
		if p.BootName == bootstate.BootEnvFile {
			// boot.env is written last, from the manifest's cmdline:
			// it is what makes the directory bootable.
			return res, fmt.Errorf("%w: payload %s: boot_name %s is written by the node", update.ErrInvalid, p.Name, p.BootName)
		}
		// An earlier call may have written it already.
		if sum, err := filehash.SHA256(filepath.Join(vdir, p.BootName)); err == nil && sum == p.SHA256 {
			continue
		}
		// A version on the card may have the same file (the kernel,
		// when only the root changed): copied there, not downloaded.
		if src := o.onCard(p, st); src != "" {
			bootSrc[p.Name] = src
			continue
		}
		bootSrc[p.Name] = filepath.Join(incoming, p.Name)
		need = append(need, p)
	}

	// 3. Downloads, each checked against the manifest.
	if err := os.MkdirAll(incoming, 0o700); err != nil {
		return res, err
	}
	for _, p := range need {
		dst := filepath.Join(incoming, p.Name)
		res.Bytes += toFetch(dst, p.Size)
		o.logf("version %s: downloading %s (%d bytes)", m.ID, p.Name, p.Size)
		err := fetcher.Download(ctx, src.url(p), dst, netfetch.Want{Size: p.Size, SHA256: p.SHA256})
		if err != nil {
			if errors.Is(err, netfetch.ErrMismatch) {
				// Content that does not match the signed manifest: what
				// was fetched is worthless, and taking space.
				os.RemoveAll(incoming)
				return res, fmt.Errorf("%w: payload %s of version %s is not what the signed manifest says (the bundle on the server is damaged or was changed: rebuild or recopy it): %w", update.ErrInvalid, p.Name, m.ID, err)
			}
			return res, fmt.Errorf("downloading %s of version %s: %w (run again to resume)", p.Name, m.ID, err)
		}
	}

	// 4. The root.
	if !done {
		if err := o.receive(filepath.Join(incoming, root.Name), rootDir, m.ID); err != nil {
			return res, err
		}
	}

	// The root the version will run on, with this node's identity.
	if err := o.makeLive(m.ID); err != nil {
		return res, fmt.Errorf("version %s: %w", m.ID, err)
	}

	// 5. Boot files; boot.env last.
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		return res, err
	}
	for _, p := range m.Payloads {
		if p.Kind != update.KindBoot {
			continue
		}
		src, ok := bootSrc[p.Name]
		if !ok {
			continue // already in place
		}
		if err := copyChecked(src, filepath.Join(vdir, p.BootName), p.SHA256); err != nil {
			return res, fmt.Errorf("writing boot file %s of version %s: %w", p.BootName, m.ID, err)
		}
	}
	env, err := bootstate.BootEnv(m.Cmdline)
	if err != nil {
		return res, fmt.Errorf("%w: %s: %w", update.ErrInvalid, update.ManifestFile, err)
	}
	if err := atomicfile.WriteFileIfChanged(filepath.Join(vdir, bootstate.BootEnvFile), env, 0o644); err != nil {
		return res, err
	}

	// 6. The record, then the try.
	if err := atomicfile.WriteFileIfChanged(filepath.Join(o.Top, RecordsDir, m.ID+".json"), mb, 0o644); err != nil {
		return res, fmt.Errorf("recording version %s: %w", m.ID, err)
	}
	// Read again: the state may have changed since step 1 (a commit).
	if st, err = bootstate.Read(o.Boot); err != nil {
		return res, fmt.Errorf("boot state on %s: %w", o.Boot, err)
	}
	if st.Good == m.ID {
		o.logf("version %s is the good version already: it boots once no other is tried", m.ID)
	} else {
		next, err := st.TryVersion(m.ID)
		if err != nil {
			return res, err
		}
		if err := bootstate.Write(o.Boot, next); err != nil {
			return res, fmt.Errorf("marking version %s to try: %w", m.ID, err)
		}
	}
	if err := os.RemoveAll(incoming); err != nil {
		o.logf("removing %s: %v", incoming, err)
	}
	o.logf("version %s: applied; the next boot tries it", m.ID)
	return res, nil
}

// check refuses a version this node should not take.
func (o *Options) check(m update.Manifest, st bootstate.State) error {
	if o.Want != "" && m.ID != o.Want {
		return fmt.Errorf("%w: it holds %s, %s was asked for", ErrNotWanted, m.ID, o.Want)
	}
	if m.Board != o.Board {
		return fmt.Errorf("%w: it is for %s, this node is %s", ErrOtherBoard, m.Board, o.Board)
	}
	if m.ID == o.Running {
		return ErrRunning
	}
	if !o.Retry {
		if _, err := os.Stat(filepath.Join(o.Top, RecordsDir, m.ID+".bad")); err == nil {
			return fmt.Errorf("%w (%s): pass Retry to try it again", ErrBad, filepath.Join(RecordsDir, m.ID+".bad"))
		}
		if id, ok := st.Booted(o.Running).Failed(); ok && id == m.ID {
			return fmt.Errorf("%w: it used its %d tries without being committed; pass Retry to try it again", ErrBad, bootstate.MaxTries)
		}
	}
	if !o.AllowOlder {
		rec, err := ReadRecord(o.Top, o.Running)
		switch {
		case errors.Is(err, os.ErrNotExist):
			// The running version came on the card, not from a bundle:
			// its age is unknown, so any version may follow it.
		case err != nil:
			return err
		case m.Created < rec.Created:
			return fmt.Errorf("%w: created %d, the running %s was created %d; pass AllowOlder to go back", ErrOlder, m.Created, o.Running, rec.Created)
		}
	}
	return nil
}

// ReadRecord returns the manifest recorded for version id when it was
// applied. A version never applied (the card's first) has none: the
// error then matches os.ErrNotExist.
func ReadRecord(top, id string) (update.Manifest, error) {
	var m update.Manifest
	if err := bootstate.ValidID(id); err != nil {
		return m, err
	}
	p := filepath.Join(top, RecordsDir, id+".json")
	b, err := os.ReadFile(p)
	if err != nil {
		return m, err
	}
	// It was verified before it was recorded; the record is the node's
	// own file, so plain decoding is enough.
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%s: %w (remove it if it is damaged)", p, err)
	}
	return m, nil
}

// MarkBad records version id as bad (why says how it failed): Apply then
// refuses it unless Options.Retry.
func MarkBad(top, id, why string) error {
	if err := bootstate.ValidID(id); err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(top, RecordsDir, id+".bad"), []byte(why+"\n"), 0o644)
}

// chooseRoot picks the incremental stream from a parent this node holds
// as received (the running version first), or else the full stream.
func (o *Options) chooseRoot(m update.Manifest) (update.Payload, error) {
	var full *update.Payload
	var incr []update.Payload
	for _, p := range m.Payloads {
		switch p.Kind {
		case update.KindRootFull:
			full = &p
		case update.KindRootIncremental:
			if p.Parent == o.Running {
				incr = append([]update.Payload{p}, incr...)
			} else {
				incr = append(incr, p)
			}
		}
	}
	for _, p := range incr {
		ok, err := received(filepath.Join(o.Top, versions.RootsDir, p.Parent), p.Parent)
		if err != nil {
			o.logf("parent %s unusable: %v", p.Parent, err)
			continue
		}
		if ok {
			o.logf("version %s: incremental root from %s", m.ID, p.Parent)
			return p, nil
		}
	}
	if full == nil {
		return update.Payload{}, fmt.Errorf("version %s has no full root stream and this node holds none of its parents: apply a version in between first, or ask for a bundle with root.full", m.ID)
	}
	o.logf("version %s: full root", m.ID)
	return *full, nil
}

// received says whether dir is version id's whole root: a read-only
// subvolume with the received UUID update.RootIdentity gives. A missing
// dir is false, no error; a subvolume that is not that root is false
// too (a receive cut short).
func received(dir, id string) (bool, error) {
	want, _, err := update.RootIdentity(id)
	if err != nil {
		return false, err
	}
	info, err := btrfsctl.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return info.ReadOnly && info.ReceivedUUID == want, nil
}

// receive makes rootDir (Top/roots/<id>) from the send stream at stream.
func (o *Options) receive(stream, rootDir, id string) error {
	btrfs, err := exec.LookPath("btrfs")
	if err != nil {
		return fmt.Errorf("receiving version %s needs the btrfs command: install btrfs-progs: %w", id, err)
	}
	if _, err := os.Lstat(rootDir); err == nil {
		// Not the whole root (received said so): what a receive cut
		// short leaves, a writable subvolume holding part of it.
		if _, err := btrfsctl.Stat(rootDir); err != nil {
			return fmt.Errorf("%s is in the way and is not a subvolume: remove it: %w", rootDir, err)
		}
		o.logf("version %s: deleting the partial %s a cut receive left", id, rootDir)
		if err := btrfsctl.Delete(rootDir); err != nil {
			return err
		}
	}
	roots := filepath.Dir(rootDir)
	if err := os.MkdirAll(roots, 0o755); err != nil {
		return err
	}
	o.logf("version %s: btrfs receive -f %s %s", id, stream, roots)
	out, err := exec.Command(btrfs, "receive", "-f", stream, roots).CombinedOutput()
	if err != nil {
		return fmt.Errorf("btrfs receive -f %s %s: %w\n%s", stream, roots, err, out)
	}
	ok, err := received(rootDir, id)
	if err != nil || !ok {
		// The stream was signed but made something else: never leave it
		// where a version's root belongs.
		btrfsctl.Delete(rootDir)
		return fmt.Errorf("%w: the root stream of version %s did not make a read-only %s with its identity (%v)", update.ErrInvalid, id, rootDir, err)
	}
	// The root must be on disk before the boot files that make the
	// version bootable are.
	return atomicfile.SyncFS(roots)
}

// onCard returns the path of a file with p's content in the boot
// directory of the running or the good version, "" if neither has it.
func (o *Options) onCard(p update.Payload, st bootstate.State) string {
	ids := []string{o.Running}
	if st.Good != o.Running {
		ids = append(ids, st.Good) // hashing the running one's twice is tens of MB read again
	}
	for _, id := range ids {
		src := filepath.Join(o.Boot, bootstate.VersionDir(id), p.BootName)
		if sum, err := filehash.SHA256(src); err == nil && sum == p.SHA256 {
			o.logf("%s: the same as version %s's, copied on the card", p.Name, id)
			return src
		}
	}
	return ""
}

// makeLive makes live/<id>, the writable root version id runs on, from
// roots/<id> now rather than at its first boot, so that it starts with
// the running version's node identity (Options.Carry): a node's
// machine-id and SSH host keys never change with an update. It is made
// under a temporary name and renamed, so a cut leaves no half-carried
// live root, only a leftover the next call removes.
func (o *Options) makeLive(id string) error {
	live := filepath.Join(o.Top, versions.LiveDir, id)
	if _, err := btrfsctl.Stat(live); err == nil {
		return nil
	}
	tmp := live + ".new"
	if _, err := os.Lstat(tmp); err == nil {
		o.logf("version %s: deleting the partial %s a cut update left", id, tmp)
		if err := btrfsctl.Delete(tmp); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Dir(live), 0o755); err != nil {
		return err
	}
	if err := btrfsctl.Snapshot(filepath.Join(o.Top, versions.RootsDir, id), tmp, false); err != nil {
		return err
	}
	if o.Carry != nil {
		from := filepath.Join(o.Top, versions.LiveDir, o.Running)
		if err := o.Carry(from, tmp); err != nil {
			btrfsctl.Delete(tmp)
			return fmt.Errorf("carrying the node's identity from %s: %w", from, err)
		}
	}
	if err := atomicfile.SyncFS(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, live); err != nil {
		return err
	}
	o.logf("version %s: %s/%s made with this node's identity", id, versions.LiveDir, id)
	return atomicfile.SyncFS(filepath.Dir(live))
}

// toFetch estimates what downloading dst still takes: nothing if it is
// there, what its .part lacks otherwise.
func toFetch(dst string, size int64) int64 {
	if _, err := os.Stat(dst); err == nil {
		return 0
	}
	if st, err := os.Stat(dst + ".part"); err == nil && st.Size() <= size {
		return size - st.Size()
	}
	return size
}

// copyChecked writes src to dst through atomicfile unless dst already
// holds it (FAT wears; a repeated Apply rewrites nothing).
func copyChecked(src, dst, sum string) error {
	if have, err := filehash.SHA256(dst); err == nil && have == sum {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	f, err := atomicfile.Create(dst, 0o644)
	if err != nil {
		return err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), in); err != nil {
		f.Abort()
		return err
	}
	if hex.EncodeToString(h.Sum(nil)) != sum {
		f.Abort()
		return fmt.Errorf("%s changed since it was downloaded and checked: run again", src)
	}
	return f.Commit()
}

// cleanIncoming removes other versions' downloads from o.Incoming.
func (o *Options) cleanIncoming(keep string) {
	ents, err := os.ReadDir(o.Incoming)
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.Name() == keep || bootstate.ValidID(e.Name()) != nil {
			continue
		}
		o.logf("removing the abandoned download %s", filepath.Join(o.Incoming, e.Name()))
		os.RemoveAll(filepath.Join(o.Incoming, e.Name()))
	}
}
