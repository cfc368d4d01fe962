package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mkimage/mkimage/internal/atomicfile"
	"github.com/mkimage/mkimage/internal/node/btrfsctl"
	"golang.org/x/sys/unix"
)

// A container moves between nodes as two btrfs send streams, each
// written by the node it leaves and read by the node it goes to (the
// build host pipes one into the other over SSH, so the nodes need no
// keys for each other):
//
//   - the first pass, while it runs: a reflinked copy of its directory in
//     a subvolume of its own, snapshotted read-only (NAME.1) and sent whole;
//   - the last pass, after it stops: its directory is set aside where LXC
//     does not look (MovedDir), the copy brought up to date with rsync
//     (only changed blocks are written), snapshotted (NAME.2) and sent
//     incrementally against NAME.1.
//
// The node it goes to receives both into MoveDir and installs NAME.2's
// copy as the container's directory with one rename. A receive counts
// only once btrfs receive finished it (its Received UUID set); a cut one
// is deleted by the next. Until the new node has put it in place,
// AbortMove puts the container back and starts it on its old node.

// MoveDir holds a move's subvolumes on both nodes: in the containers'
// subvolume, so reflinks reach the containers' files, one level below
// them, so LXC never takes it for a container (nor a snapshot of
// ContainersSubvolume for data: subvolumes nested in it are left out).
const MoveDir = ContainersSubvolume + "/.mkimage-moving"

// MovedDir keeps a container's directory on the node it left, stopped
// and out of LXC's sight, for AbortMove. The next move of the same name
// away from this node replaces it, one back to it deletes it.
const MovedDir = ContainersSubvolume + "/.mkimage-moved"

// Pass is one of a move's two streams.
type Pass int

const (
	First Pass = 1 // the whole copy, taken while the container runs
	Last  Pass = 2 // the changes since First, taken after it stopped
)

// Moved is what a pass did.
type Moved struct {
	Pass  Pass
	Bytes int64 // the stream's length
	Took  time.Duration
	// NotLive is why a live last pass stopped the container instead of
	// checkpointing it.
	NotLive string
}

func checkName(name string) error {
	if name == "" || strings.ContainsAny(name, "/ \t\n") || strings.HasPrefix(name, ".") {
		return fmt.Errorf("container %q: want a container's name", name)
	}
	return nil
}

func (n Node) lxcPath() string { return filepath.Join(n.Root, ContainersSubvolume) }
func (n Node) moveDir() string { return filepath.Join(n.Root, MoveDir) }
func (n Node) snap(name string, p Pass) string {
	return filepath.Join(n.moveDir(), fmt.Sprintf("%s.%d", name, p))
}

// lxc runs LXC's command verb (lxc-start, lxc-stop) on container name
// in the node's LXC path.
func (n Node) lxc(ctx context.Context, verb, name string) error {
	return command(ctx, "lxc-"+verb, "-P", n.lxcPath(), "-n", name)
}

// running tells whether LXC runs container name.
func (n Node) running(ctx context.Context, name string) bool {
	out, _ := exec.CommandContext(ctx, "lxc-info", "-P", n.lxcPath(), "-n", name, "-sH").Output()
	return strings.TrimSpace(string(out)) == "RUNNING"
}

// SendOptions are the sending node's choices for a move.
type SendOptions struct {
	// Live: the last pass checkpoints the running container with CRIU
	// (lxc-checkpoint) instead of stopping it, and sends the checkpoint
	// with its files for the other node to restore; where the dump fails
	// it is stopped as without Live.
	Live bool
	// Stopping is called as the last pass stops the container.
	Stopping func()
}

// SendMove writes pass p of container name's move to w. The last pass
// calls o.Stopping (for the caller to time the downtime) as it stops
// the container (or checkpoints it, o.Live), sets its directory aside
// under MovedDir and records whether it ran (a marker in MoveDir, and a file in the stream that
// tells the other node to start it): run again after a failure, it
// goes on from where the container is and still knows.
func (n Node) SendMove(ctx context.Context, name string, p Pass, w io.Writer, o SendOptions) (Moved, error) {
	if err := checkName(name); err != nil {
		return Moved{}, err
	}
	stopping := o.Stopping
	if stopping == nil {
		stopping = func() {}
	}
	var once sync.Once
	var liveErr error
	start := time.Now()
	work := filepath.Join(n.moveDir(), name)
	live := filepath.Join(n.lxcPath(), name)
	aside := filepath.Join(n.Root, MovedDir, name)
	switch p {
	case First:
		if _, err := os.Stat(filepath.Join(live, "config")); err != nil {
			return Moved{}, fmt.Errorf("container %s: %w", name, err)
		}
		if err := n.clearMove(name); err != nil {
			return Moved{}, err
		}
		if err := os.MkdirAll(n.moveDir(), 0o700); err != nil {
			return Moved{}, err
		}
		if err := btrfsctl.Create(work); err != nil {
			return Moved{}, err
		}
		if err := atomicfile.WriteFile(n.copiedMarker(name), fmt.Appendf(nil, "%d\n", start.UnixNano()), 0o600); err != nil {
			return Moved{}, err
		}
		if err := command(ctx, "cp", "-a", "--reflink=always", "--", live, filepath.Join(work, name)); err != nil {
			return Moved{}, err
		}
	case Last:
		if _, err := btrfsctl.Stat(n.snap(name, First)); err != nil {
			return Moved{}, fmt.Errorf("container %s: no first pass on this node (%w): send it first", name, err)
		}
		if err := deleteSubvolume(n.snap(name, Last)); err != nil {
			return Moved{}, err
		}
		if _, err := os.Stat(live); err == nil {
			if n.running(ctx, name) {
				if err := atomicfile.WriteFile(n.ranMarker(name), nil, 0o600); err != nil {
					return Moved{}, err
				}
				once.Do(stopping)
				dumped := false
				if o.Live {
					if liveErr = n.checkpoint(ctx, name, filepath.Join(work, checkpointInStream)); liveErr == nil {
						dumped = true
					} else {
						n.Log("move: container %s: no live move, it is stopped instead: %v", name, liveErr)
					}
				}
				if !dumped {
					if err := n.lxc(ctx, "stop", name); err != nil {
						return Moved{}, err
					}
				}
			}
			if err := os.RemoveAll(aside); err != nil {
				return Moved{}, err
			}
			if err := os.MkdirAll(filepath.Dir(aside), 0o700); err != nil {
				return Moved{}, err
			}
			cut("set-aside")
			if err := os.Rename(live, aside); err != nil {
				return Moved{}, err
			}
			if err := atomicfile.SyncDir(n.lxcPath()); err != nil {
				return Moved{}, err
			}
			n.Log("move: container %s stopped and set aside in %s", name, aside)
		} else if _, err := os.Stat(filepath.Join(aside, "config")); err != nil {
			return Moved{}, fmt.Errorf("container %s: neither %s nor %s holds it", name, live, aside)
		}
		once.Do(stopping)
		changed, err := changedSince(n.copiedMarker(name))
		if err != nil {
			return Moved{}, fmt.Errorf("container %s: %w", name, err)
		}
		if err := syncCopy(ctx, aside, filepath.Join(work, name), changed); err != nil {
			return Moved{}, err
		}
		// The stream says whether to start it on the other side.
		ran := filepath.Join(work, ranInStream)
		if _, err = os.Stat(n.ranMarker(name)); err == nil {
			err = os.WriteFile(ran, nil, 0o600)
		} else if err = os.Remove(ran); errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
		if err != nil {
			return Moved{}, err
		}
	default:
		return Moved{}, fmt.Errorf("move pass %d: want 1 or 2", p)
	}
	if err := btrfsctl.Snapshot(work, n.snap(name, p), true); err != nil {
		return Moved{}, err
	}
	argv := []string{"btrfs", "send", "-q"}
	if p == Last {
		argv = append(argv, "-p", n.snap(name, First))
	}
	cw := &counter{}
	if err := pipe(ctx, nil, io.MultiWriter(w, cw), append(argv, n.snap(name, p))...); err != nil {
		return Moved{}, err
	}
	m := Moved{Pass: p, Bytes: cw.n, Took: time.Since(start)}
	if liveErr != nil {
		m.NotLive = oneLine(liveErr.Error())
	}
	return m, nil
}

// checkpointInStream, beside the container in the last pass's
// subvolume, holds CRIU's images of a live move.
const checkpointInStream = ".checkpoint"

// checkpoint dumps running container name into dir with CRIU through
// LXC and stops it; the error carries CRIU's own reason from its log.
func (n Node) checkpoint(ctx context.Context, name, dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	err := command(ctx, "lxc-checkpoint", "-P", n.lxcPath(), "-n", name, "-D", dir, "-s")
	if err == nil && n.running(ctx, name) {
		err = errors.New("lxc-checkpoint left it running")
	}
	if err != nil {
		err = fmt.Errorf("%w%s", err, criuErrors(filepath.Join(dir, "dump.log")))
		os.RemoveAll(dir)
	}
	return err
}

// oneLine joins a message's lines with "; ", for a line-based report.
func oneLine(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
}

// criuErrors are the Error lines of a CRIU log (the reason a dump or
// restore failed), "" if none.
func criuErrors(log string) string {
	data, err := os.ReadFile(log)
	if err != nil {
		return ""
	}
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, "Error (") {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	if len(lines) > 4 {
		lines = lines[len(lines)-4:]
	}
	if len(lines) == 0 {
		return ""
	}
	return "; CRIU: " + strings.Join(lines, "; ")
}

// syncCopy brings dst, a copy of src, up to date with src. rsync's
// quick check (size and mtime, to the second) handles what was added,
// deleted or rewritten since; a file changed in the same second as its
// copy, keeping its size, would pass it, so every entry changed says
// may have changed is compared by content too. A changed file is
// rewritten in place where its blocks differ, so the copy keeps its
// extents and an incremental stream carries only what changed.
func syncCopy(ctx context.Context, src, dst string, changed func(rel string, st *unix.Stat_t) bool) error {
	rsync := []string{"rsync", "-aHAX", "--numeric-ids", "--inplace", "--no-whole-file"}
	if err := command(ctx, append(rsync, "--delete", src+"/", dst+"/")...); err != nil {
		return err
	}
	var recent bytes.Buffer
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if rel, _ := filepath.Rel(src, p); changed(rel, &st) {
			recent.WriteString(rel)
			recent.WriteByte(0)
		}
		return nil
	})
	if err != nil || recent.Len() == 0 {
		return err
	}
	return pipe(ctx, &recent, nil, append(rsync, "--checksum", "--from0", "--files-from=-", src+"/", dst+"/")...)
}

// changedSince says an entry may have changed since the time marker
// holds: its ctime (which no program can set back) is not older, less a
// margin for the clock's tick.
func changedSince(marker string) (func(string, *unix.Stat_t) bool, error) {
	data, err := os.ReadFile(marker)
	var copied int64
	if err == nil {
		_, err = fmt.Sscan(string(data), &copied)
	}
	if err != nil {
		return nil, fmt.Errorf("when the first pass copied it: %w", err)
	}
	since := copied - int64(2*time.Second)
	return func(_ string, st *unix.Stat_t) bool { return st.Ctim.Nano() >= since }, nil
}

// changedFrom says an entry of a received snapshot differs from the one
// of the same path in its parent snapshot before: receive made the
// snapshot from the parent, so an entry the stream did not touch is the
// parent's, inode and ctime alike.
func changedFrom(before string) func(string, *unix.Stat_t) bool {
	return func(rel string, st *unix.Stat_t) bool {
		var old unix.Stat_t
		if err := unix.Lstat(filepath.Join(before, rel), &old); err != nil {
			return true
		}
		return old.Ino != st.Ino || old.Ctim != st.Ctim
	}
}

// ReceiveMove reads pass p of container name's move from r into
// MoveDir. The first pass starts over (what an earlier move left goes);
// the last needs the first. What a cut stream left is deleted.
func (n Node) ReceiveMove(ctx context.Context, name string, p Pass, r io.Reader) (Moved, error) {
	if err := checkName(name); err != nil {
		return Moved{}, err
	}
	start := time.Now()
	if _, err := os.Stat(filepath.Join(n.lxcPath(), name)); err == nil {
		return Moved{}, fmt.Errorf("container %s already exists on this node (%s)", name, filepath.Join(n.lxcPath(), name))
	}
	switch p {
	case First:
		if err := n.clearMove(name); err != nil {
			return Moved{}, err
		}
	case Last:
		if info, err := btrfsctl.Stat(n.snap(name, First)); err != nil || !info.Received() {
			return Moved{}, fmt.Errorf("container %s: the first pass did not arrive here: send it first", name)
		}
		if err := deleteSubvolume(n.snap(name, Last)); err != nil {
			return Moved{}, err
		}
	default:
		return Moved{}, fmt.Errorf("move pass %d: want 1 or 2", p)
	}
	if err := os.MkdirAll(n.moveDir(), 0o700); err != nil {
		return Moved{}, err
	}
	cr := &counter{}
	err := pipe(ctx, io.TeeReader(r, cr), nil, "btrfs", "receive", "--", n.moveDir())
	if err == nil {
		if info, serr := btrfsctl.Stat(n.snap(name, p)); serr != nil || !info.Received() {
			err = fmt.Errorf("the stream did not make %s (%v)", n.snap(name, p), serr)
		}
	}
	if err != nil {
		// A cut receive leaves a writable subvolume behind.
		if derr := deleteSubvolume(n.snap(name, p)); derr != nil {
			err = fmt.Errorf("%w; %w", err, derr)
		}
		return Moved{}, fmt.Errorf("container %s: pass %d: %w", name, p, err)
	}
	if p == First {
		// The container's directory-to-be, copied now, while it still
		// runs on the other node: the last pass only brings it up to
		// date.
		if err := command(ctx, "cp", "-a", "--reflink=always", "--", filepath.Join(n.snap(name, First), name), n.staging(name)); err != nil {
			os.RemoveAll(n.staging(name))
			return Moved{}, err
		}
	}
	return Moved{Pass: p, Bytes: cr.n, Took: time.Since(start)}, nil
}

// staging is where the node a container moves to makes its directory,
// before one rename puts it in place.
func (n Node) staging(name string) string { return filepath.Join(n.moveDir(), name+".in") }

// ranInStream, beside the container in the last pass's subvolume, says
// it ran on the node it left.
const ranInStream = ".ran"

// InstallMove makes the received last pass container name's directory
// (a reflinked copy renamed into place, so a power cut leaves either no
// container or a whole one), calls installed, and starts it if it ran on
// the node it left: restored from the checkpoint a live move sent, or,
// without one or if CRIU cannot restore it, afresh. The move's subvolumes go once
// it is in place. An error after installed was called leaves the
// container in place here: the node it left must not start it again.
func (n Node) InstallMove(ctx context.Context, name string, installed func()) (Installed, error) {
	var in Installed
	if err := checkName(name); err != nil {
		return in, err
	}
	_, err := os.Stat(filepath.Join(n.snap(name, Last), ranInStream))
	start := err == nil
	ckpt := filepath.Join(n.snap(name, Last), checkpointInStream)
	_, err = os.Stat(ckpt)
	restore := err == nil
	src := filepath.Join(n.snap(name, Last), name)
	if info, err := btrfsctl.Stat(n.snap(name, Last)); err != nil || !info.Received() {
		return in, fmt.Errorf("container %s: the last pass did not arrive here", name)
	}
	staging := n.staging(name)
	if _, err := os.Stat(staging); err == nil {
		// The copy made of the first pass, brought up to the last.
		err = syncCopy(ctx, src, staging, changedFrom(filepath.Join(n.snap(name, First), name)))
		if err != nil {
			os.RemoveAll(staging)
			return in, err
		}
	} else if err := command(ctx, "cp", "-a", "--reflink=always", "--", src, staging); err != nil {
		os.RemoveAll(staging)
		return in, err
	}
	if err := atomicfile.SyncFS(n.lxcPath()); err != nil {
		return in, err
	}
	cut("installing")
	live := filepath.Join(n.lxcPath(), name)
	if err := unix.Renameat2(unix.AT_FDCWD, staging, unix.AT_FDCWD, live, unix.RENAME_NOREPLACE); err != nil {
		os.RemoveAll(staging)
		return in, fmt.Errorf("container %s: into %s: %w", name, live, err)
	}
	if err := atomicfile.SyncDir(n.lxcPath()); err != nil {
		return in, err
	}
	if installed != nil {
		installed()
	}
	// A copy this node kept when the container left it is older than
	// the one now in place.
	if err := os.RemoveAll(filepath.Join(n.Root, MovedDir, name)); err != nil {
		return in, err
	}
	if start && restore {
		// CRIU writes its log beside the images: a writable copy.
		dir := filepath.Join(n.moveDir(), name+".checkpoint")
		os.RemoveAll(dir)
		err := command(ctx, "cp", "-a", "--reflink=auto", "--", ckpt, dir)
		if err == nil {
			if err = command(ctx, "lxc-checkpoint", "-r", "-P", n.lxcPath(), "-n", name, "-D", dir); err == nil && !n.running(ctx, name) {
				err = errors.New("lxc-checkpoint -r left it stopped")
			}
			if err != nil {
				err = fmt.Errorf("%w%s", err, criuErrors(filepath.Join(dir, "restore.log")))
			}
		}
		os.RemoveAll(dir)
		if err == nil {
			in.Started, in.Live = true, true
			return in, n.clearMove(name)
		}
		in.NotLive = oneLine(err.Error())
		n.Log("move: container %s: the checkpoint did not restore, it starts afresh: %v", name, err)
	}
	if start {
		if err := n.lxc(ctx, "start", name); err != nil {
			return in, err
		}
		in.Started = true
	}
	return in, n.clearMove(name)
}

// Installed is how InstallMove left the container.
type Installed struct {
	Started bool // it ran on the node it left, and runs here
	Live    bool // restored from a checkpoint, not started afresh
	// NotLive is why a checkpoint that came with it did not restore.
	NotLive string
}

// AbortMove undoes a move on the node the container was leaving: its
// directory comes back from MovedDir (if the last pass set it aside and
// no copy took its place), it starts again if the last pass stopped it,
// and the move's subvolumes go. It is for a move whose new node did not
// start the container: one that did is running there.
func (n Node) AbortMove(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	// Without a move under way here, a copy in MovedDir is one a
	// finished move left: the container runs elsewhere.
	if _, err := btrfsctl.Stat(n.snap(name, First)); err != nil {
		return fmt.Errorf("container %s: no move of it under way on this node", name)
	}
	live := filepath.Join(n.lxcPath(), name)
	aside := filepath.Join(n.Root, MovedDir, name)
	if _, err := os.Stat(live); errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(aside); err != nil {
			return fmt.Errorf("container %s: neither %s nor %s holds it", name, live, aside)
		}
		if err := unix.Renameat2(unix.AT_FDCWD, aside, unix.AT_FDCWD, live, unix.RENAME_NOREPLACE); err != nil {
			return fmt.Errorf("container %s: back from %s: %w", name, aside, err)
		}
		if err := atomicfile.SyncDir(n.lxcPath()); err != nil {
			return err
		}
		n.Log("move: container %s is back in %s", name, live)
	}
	if _, err := os.Stat(n.ranMarker(name)); err == nil && !n.running(ctx, name) {
		if err := n.lxc(ctx, "start", name); err != nil {
			return err
		}
	}
	return n.clearMove(name)
}

// FinishMove deletes the move's subvolumes on the node the container
// left, once it runs on the other; its directory stays in MovedDir.
func (n Node) FinishMove(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	return n.clearMove(name)
}

// copiedMarker holds when the first pass began copying container name.
func (n Node) copiedMarker(name string) string { return filepath.Join(n.moveDir(), name+".copied") }

// ranMarker is there while a move holds container name stopped that ran.
func (n Node) ranMarker(name string) string { return filepath.Join(n.moveDir(), name+".ran") }

// clearMove deletes what a move of name left in MoveDir.
func (n Node) clearMove(name string) error {
	for _, p := range []string{n.staging(name), filepath.Join(n.moveDir(), name+".checkpoint"), n.ranMarker(name), n.copiedMarker(name)} {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	for _, p := range []string{n.snap(name, Last), n.snap(name, First), filepath.Join(n.moveDir(), name)} {
		if err := deleteSubvolume(p); err != nil {
			return err
		}
	}
	return nil
}

// deleteSubvolume deletes the subvolume at p, if any.
func deleteSubvolume(p string) error {
	if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := btrfsctl.Delete(p); err != nil {
		return fmt.Errorf("deleting %s: %w", p, err)
	}
	return nil
}

// pipe runs argv with stdin from r and stdout to w (nil: none), its
// stderr in the error.
func pipe(ctx context.Context, r io.Reader, w io.Writer, argv ...string) error {
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	c.Stdin, c.Stdout = r, w
	var stderr tail
	c.Stderr = &stderr
	c.WaitDelay = 5 * time.Second
	if err := c.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, stderr.String())
	}
	return nil
}
