package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mkimage/mkimage/internal/shquote"
)

// ErrHostKey is wrapped by errors from a target whose host key is not in
// the known_hosts file given: an unknown key is refused, never learnt.
var ErrHostKey = errors.New("the target's host key does not match its known_hosts file")

// sshArgs is the ssh command line that runs remote (a shell command line)
// on t. The user's ssh config is not read (-F none) and only the given
// identity and known_hosts count, so what a node connects to and with
// what key is exactly what its configuration says.
func (t Target) sshArgs(remote string) []string {
	port := t.Port
	if port == 0 {
		port = 22
	}
	args := []string{"ssh", "-F", "none"}
	if t.control != "" {
		args = append(args, "-o", "ControlMaster=no", "-o", "ControlPath="+t.control)
	}
	return append(args,
		"-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile="+t.KnownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "UpdateHostKeys=no",
		"-o", "IdentitiesOnly=yes",
		"-o", "IdentityFile="+t.Identity,
		"-o", "ConnectTimeout=20",
		"-o", "ServerAliveInterval=15",
		"-o", "ServerAliveCountMax=4",
		"-o", "LogLevel=ERROR",
		"-p", strconv.Itoa(port),
		t.Host, "--", remote)
}

// master starts an ssh connection for the commands that follow to share
// (ControlMaster): an export runs several remote commands, and a key
// exchange costs seconds on a small ARM node. If the master dies the
// commands connect on their own (ssh falls back when the socket is gone).
// stop ends it.
func (e *run) master(ctx context.Context) (func(), error) {
	dir, err := os.MkdirTemp("", "backup-ssh-")
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	sock := filepath.Join(dir, "m")
	argv := append([]string{"ssh", "-M", "-N", "-o", "ControlPath=" + sock, "-o", "ControlPersist=no"}, e.t.sshArgs("")[1:]...)
	argv = argv[:len(argv)-2] // no "--" and remote command with -N
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	c.WaitDelay = 5 * time.Second
	stderr := &tail{}
	c.Stderr = stderr
	if err := c.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("backup: ssh to %s: %w", e.t, err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	kill := func() {
		c.Process.Kill()
		<-done
		os.RemoveAll(dir)
	}
	for tick := time.NewTicker(20 * time.Millisecond); ; {
		select {
		case err := <-done:
			done <- err
			kill()
			msg := fmt.Sprintf("backup: ssh to %s: %v: %s", e.t, err, stderr)
			if strings.Contains(stderr.String(), "Host key verification failed") {
				return nil, fmt.Errorf("%s: %w", msg, ErrHostKey)
			}
			return nil, fmt.Errorf("%s: %w", msg, err)
		case <-tick.C:
			if _, err := os.Stat(sock); err == nil {
				tick.Stop()
				e.t.control = sock
				return func() { e.t.control = ""; kill() }, nil
			}
		}
	}
}

// lockPrologue enters the target directory, made if only its last
// component is missing (each node exports into its own DIR/NODENAME; a
// mistyped DIR still fails), and takes the target's lock
// (flock on DIR/.backup.lock, held by every command the script starts, so
// a receive that outlives its killed ssh still holds it). Cleanup after a
// cut export waits on it, so it never races a dying btrfs receive.
func lockPrologue(dir string) string {
	return "[ -d " + shquote.Quote(dir) + " ] || mkdir -m 700 -- " + shquote.Quote(dir) + " || exit 3\n" +
		"cd -- " + shquote.Quote(dir) + " || exit 3\n" +
		"exec 9>>.backup.lock || exit 3\n" +
		"flock -w 120 9 || { echo " + shquote.Quote(dir+": locked by another export for 120s") + " >&2; exit 75; }\n"
}

// stage is one process of a pipeline; tap, if set, sees every byte the
// process writes to the next stage.
type stage struct {
	argv []string
	tap  io.Writer
}

// tail keeps the last bytes written to it: a command's stderr for errors.
type tail struct {
	mu sync.Mutex
	b  []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 2048 {
		t.b = t.b[len(t.b)-2048:]
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}

// cmdline shows argv for errors: for ssh, the host and the remote
// command without the lock prologue, cut short.
func cmdline(argv []string) string {
	if argv[0] != "ssh" {
		return strings.Join(argv, " ")
	}
	var lines []string
	for _, l := range strings.Split(argv[len(argv)-1], "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "cd -- ") && !strings.HasPrefix(l, "exec 9>>") && !strings.HasPrefix(l, "flock -w") {
			lines = append(lines, l)
		}
	}
	remote := strings.Join(lines, "; ")
	if len(remote) > 120 {
		remote = remote[:120] + "..."
	}
	return "ssh " + argv[len(argv)-3] + " " + strconv.Quote(remote)
}

// pipeline runs stages with each one's stdout going to the next one's
// stdin through a Go copy (so taps can count and hash what passes) and
// returns the last one's stdout. When one stage fails the rest are
// killed, so a dead receiver never leaves a sender blocked; cancelling
// ctx kills them all.
func pipeline(ctx context.Context, stages ...stage) ([]byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmds := make([]*exec.Cmd, len(stages))
	tails := make([]*tail, len(stages))
	var out bytes.Buffer
	var closeAfterStart, closeAtEnd []*os.File
	var copies sync.WaitGroup
	defer func() {
		for _, f := range closeAtEnd {
			f.Close()
		}
	}()
	for i, s := range stages {
		c := exec.CommandContext(ctx, s.argv[0], s.argv[1:]...)
		c.WaitDelay = 5 * time.Second
		tails[i] = &tail{}
		c.Stderr = tails[i]
		cmds[i] = c
	}
	type link struct {
		from, to *os.File
		tap      io.Writer
	}
	var links []link
	for i := 0; i+1 < len(cmds); i++ {
		r1, w1, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		r2, w2, err := os.Pipe()
		if err != nil {
			r1.Close()
			w1.Close()
			return nil, err
		}
		cmds[i].Stdout, cmds[i+1].Stdin = w1, r2
		closeAfterStart = append(closeAfterStart, w1, r2)
		closeAtEnd = append(closeAtEnd, r1, w2)
		links = append(links, link{r1, w2, stages[i].tap})
	}
	last := len(cmds) - 1
	if t := stages[last].tap; t != nil {
		cmds[last].Stdout = io.MultiWriter(&out, t)
	} else {
		cmds[last].Stdout = &out
	}
	for i, c := range cmds {
		if err := c.Start(); err != nil {
			cancel()
			for _, d := range cmds[:i] {
				d.Wait()
			}
			for _, f := range closeAfterStart {
				f.Close()
			}
			return nil, fmt.Errorf("%s: %w", cmdline(stages[i].argv), err)
		}
	}
	// The children hold their own copies of these ends now; the parent's
	// must go or EOF never comes.
	for _, f := range closeAfterStart {
		f.Close()
	}
	for _, l := range links {
		copies.Add(1)
		go func() {
			defer copies.Done()
			var w io.Writer = l.to
			if l.tap != nil {
				w = io.MultiWriter(l.to, l.tap)
			}
			io.Copy(w, l.from)
			// EOF to the reader; a broken pipe to the writer if the
			// reader went first.
			l.to.Close()
			l.from.Close()
		}()
	}
	errs := make([]error, len(cmds))
	var wg sync.WaitGroup
	for i, c := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Wait(); err != nil {
				errs[i] = err
				cancel()
			}
		}()
	}
	wg.Wait()
	copies.Wait()
	return out.Bytes(), pipeError(stages, errs, tails)
}

// pipeError names the stage that failed first in cause: one that exited
// with a status (and said why on stderr) rather than one killed by a
// signal (a broken pipe, or our kill after the other stage failed).
func pipeError(stages []stage, errs []error, tails []*tail) error {
	pick := -1
	for i, err := range errs {
		if err == nil {
			continue
		}
		if pick < 0 {
			pick = i
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && !ws.Signaled() {
				pick = i
				break
			}
		}
	}
	if pick < 0 {
		return nil
	}
	err := errs[pick]
	msg := cmdline(stages[pick].argv) + ": " + err.Error()
	if t := tails[pick].String(); t != "" {
		msg += ": " + t
	}
	if stages[pick].argv[0] == "ssh" && strings.Contains(tails[pick].String(), "Host key verification failed") {
		return fmt.Errorf("%s: %w", msg, ErrHostKey)
	}
	return fmt.Errorf("%s: %w", msg, err)
}

// counter counts bytes and reports the running total.
type counter struct {
	n        int64
	progress func(int64)
}

func (c *counter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	if c.progress != nil {
		c.progress(c.n)
	}
	return len(p), nil
}
