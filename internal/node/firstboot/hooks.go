package firstboot

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/node/hookdir"
	"github.com/mkimage/mkimage/internal/node/rootdev"
)

// HooksDir holds the root's own first-boot hooks, relative to the root.
// Every executable in it runs once per node, in name order, after the
// other first-boot steps: chrooted into the root, with the kernel
// filesystems (/proc, /sys, /dev, /run) mounted inside it, stdin from
// /dev/null and its output on the console, each line prefixed
// "nodeinit: hook NAME: ". A hook that exits 0 is recorded in StatePath as
// "hook:NAME" and never runs again on this card; a hook that fails stops
// the hooks after it (they may depend on it) and is retried, with them, at
// the next boot. Hooks must therefore be safe to run again after a power
// cut (`dpkg --configure -a` is).
const HooksDir = "usr/lib/nodeinit/firstboot.d"

// hookPrefix marks a hook in State.Done.
const hookPrefix = "hook:"

// hookPath is PATH inside the root while a hook runs.
const hookPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// pendingHooks lists the hooks in HooksDir (package hookdir's rule)
// not yet recorded as done.
func pendingHooks(root string, done map[string]time.Time) ([]string, error) {
	hooks, err := hookdir.List(root, HooksDir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, h := range hooks {
		if _, ok := done[hookPrefix+h.Name]; !ok {
			names = append(names, h.Name)
		}
	}
	return names, nil
}

// runHooks runs the pending hooks; each one that succeeds is recorded
// before the next starts.
func (r *runner) runHooks(ctx context.Context, res *Result) error {
	names, err := pendingHooks(r.Root, r.state.Done)
	if err != nil {
		return fmt.Errorf("firstboot: hooks: %w", err)
	}
	if len(names) == 0 {
		return nil
	}
	unmount, err := r.mountKernelFS()
	if err != nil {
		return fmt.Errorf("firstboot: hooks: %w", err)
	}
	defer unmount()
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		start := time.Now()
		if err := r.runHook(ctx, n); err != nil {
			err = fmt.Errorf("firstboot: hook %s: %w; it and the hooks after it run again at the next boot", n, err)
			r.Log("nodeinit: %v", err)
			return err
		}
		rootdev.Sync(r.Root)
		r.state.Done[hookPrefix+n] = time.Now().UTC()
		if err := r.state.write(r.Root); err != nil {
			return fmt.Errorf("firstboot: recording hook %s: %w", n, err)
		}
		res.Ran = append(res.Ran, hookPrefix+n)
		r.Log("nodeinit: firstboot: hook %s done (%v)", n, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// mountKernelFS bind-mounts the kernel filesystems into the root for the
// hooks and returns what undoes it (nodeinit moves the originals into the
// root at switch_root; the binds must be gone by then).
func (r *runner) mountKernelFS() (func(), error) {
	var done []string
	unmount := func() {
		for i := len(done) - 1; i >= 0; i-- {
			if err := unix.Unmount(done[i], unix.MNT_DETACH); err != nil {
				r.Log("nodeinit: firstboot: hooks: unmount %s: %v", done[i], err)
			}
		}
	}
	for _, m := range []struct{ src, dst string }{
		{orDefault(r.Proc, "/proc"), "proc"},
		{orDefault(r.Sys, "/sys"), "sys"},
		{orDefault(r.Dev, "/dev"), "dev"},
		{orDefault(r.Run, "/run"), "run"},
	} {
		dst := r.path(m.dst)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			unmount()
			return nil, err
		}
		if err := unix.Mount(m.src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			unmount()
			return nil, fmt.Errorf("bind %s on %s: %w", m.src, dst, err)
		}
		done = append(done, dst)
	}
	return unmount, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// runHook runs one hook chrooted into the root and logs its output line
// by line.
func (r *runner) runHook(ctx context.Context, name string) error {
	cmd := exec.CommandContext(ctx, "/"+HooksDir+"/"+name)
	cmd.Dir = "/"
	cmd.Env = []string{
		"PATH=" + hookPath, "HOME=/root", "LC_ALL=C", "TERM=dumb",
		"DEBIAN_FRONTEND=noninteractive",
		"NODEINIT_HOSTNAME=" + r.id.Plan.Name, "NODEINIT_ROLE=" + r.id.Plan.Role,
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: r.Root}
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	r.Log("nodeinit: firstboot: hook %s: running", name)
	if err := cmd.Start(); err != nil {
		pw.Close()
		pr.Close()
		return err
	}
	pw.Close()
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		r.logLines(pr, "nodeinit: hook "+name+": ")
	}()
	err = cmd.Wait()
	// A background child of the hook may keep the pipe open; do not wait
	// for it forever.
	select {
	case <-copied:
	case <-time.After(2 * time.Second):
	}
	pr.Close()
	return err
}

func (r *runner) logLines(rd io.Reader, prefix string) {
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for sc.Scan() {
		r.Log("%s%s", prefix, strings.TrimRight(sc.Text(), "\r"))
	}
}

// RunHooks runs the root's pending hooks (HooksDir) alone, none of the
// per-node steps, and records each one that succeeds in StatePath as Run
// does, so Run on a later boot logs it as already done and skips it. It
// needs no cluster config (env.Config is ignored) and returns the hooks
// it ran ("hook:NAME"). nodeinit's preconfigure mode uses it to configure
// a root once at build time, before it is cloned to many cards.
func RunHooks(ctx context.Context, env Env) ([]string, error) {
	if env.Log == nil {
		env.Log = func(string, ...any) {}
	}
	st, err := ReadState(env.Root)
	if err != nil {
		if st == nil {
			return nil, err
		}
		env.Log("nodeinit: firstboot: %v", err)
	}
	r := &runner{Env: env, state: st}
	var res Result
	err = r.runHooks(ctx, &res)
	return res.Ran, err
}
