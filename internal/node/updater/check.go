package updater

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/atomicfile"
	"github.com/mkimage/mkimage/internal/bootstate"
	"github.com/mkimage/mkimage/internal/node/apply"
	"github.com/mkimage/mkimage/internal/node/hookdir"
)

// ErrCheckFailed is returned by Check when the version being tried did
// not pass its health checks: the caller reboots, so U-Boot tries it
// again or, after its tries, boots the good version.
var ErrCheckFailed = errors.New("the version being tried failed its health checks")

// CheckOptions tune Check.
type CheckOptions struct {
	// HookTimeout bounds each health hook; 0 is 10 minutes.
	HookTimeout time.Duration
	// Keep is how many versions besides good, tried and running Prune
	// keeps after a commit.
	Keep int
}

// CheckResult is what Check found and did.
type CheckResult struct {
	Committed string // the version committed, if any
	Failed    string // the version found to have failed its tries, now marked bad
}

// Check runs at every boot of a versioned root, once the system is up.
//   - Booted back on the good version after a tried version used up its
//     tries: that version is recorded as bad (apply refuses it from then
//     on) with the reason its last check gave, and the state forgets it.
//   - Booted the version being tried: the health hooks run (HookDirs);
//     when all pass the version is committed (the good one from now on)
//     and old versions are pruned. When one fails, why is recorded and
//     ErrCheckFailed returned: the caller reboots.
//   - Otherwise there is nothing to check.
//
// Then, whatever happened, the node reports its status to the build
// host named in StatusURLFile, if any (see ReportIfConfigured).
func (c *Card) Check(ctx context.Context, o CheckOptions) (CheckResult, error) {
	res, err := c.check(ctx, o)
	c.ReportIfConfigured(ctx)
	return res, err
}

func (c *Card) check(ctx context.Context, o CheckOptions) (CheckResult, error) {
	var res CheckResult
	st, err := bootstate.Read(c.Boot)
	if err != nil {
		return res, fmt.Errorf("boot state on %s: %w", c.Boot, err)
	}
	b := st.Booted(c.Running)
	if id, ok := b.Failed(); ok {
		why := lastLine(filepath.Join(c.Top, apply.RecordsDir, id+whySuffix))
		if why == "" {
			why = fmt.Sprintf("it did not pass its checks in %d boots (it hung, panicked or never got to run them)", bootstate.MaxTries)
		}
		if err := apply.MarkBad(c.Top, id, why); err != nil {
			return res, fmt.Errorf("recording version %s as bad: %w", id, err)
		}
		if err := bootstate.Write(c.Boot, st.ClearFailed()); err != nil {
			return res, err
		}
		c.Log("version %s failed: %s; marked bad, running %s", id, why, c.Running)
		res.Failed = id
		return res, nil
	}
	if !b.Trying() {
		c.Log("running the good version %s; nothing to check", c.Running)
		return res, nil
	}
	// U-Boot counted this boot before it booted the version.
	boot := fmt.Sprintf("boot %d of %d", bootstate.MaxTries-st.Tries, bootstate.MaxTries)
	c.Log("checking version %s (%s)", c.Running, boot)
	if why := c.runHooks(ctx, o.HookTimeout); why != "" {
		rec := filepath.Join(c.Top, apply.RecordsDir, c.Running+whySuffix)
		line := boot + ": " + why
		if err := appendLine(rec, line); err != nil {
			c.Log("recording why in %s: %v", rec, err)
		}
		return res, fmt.Errorf("%w: %s", ErrCheckFailed, why)
	}
	if err := apply.Commit(c.Boot, c.Running); err != nil {
		return res, err
	}
	os.Remove(filepath.Join(c.Top, apply.RecordsDir, c.Running+whySuffix))
	res.Committed = c.Running
	c.Log("version %s passed its checks: committed, it is the good version now", c.Running)
	if err := apply.Prune(c.Top, c.Boot, c.Running, o.Keep, c.Log); err != nil {
		c.Log("pruning: %v", err)
	}
	return res, nil
}

// whySuffix names the record of why a tried version's checks failed,
// beside its manifest record.
const whySuffix = ".why"

// runHooks runs the health hooks in name order, each with its output on
// the log, and says why the first that failed did ("" when all passed).
func (c *Card) runHooks(ctx context.Context, timeout time.Duration) string {
	if timeout <= 0 {
		timeout = 10 * time.Minute
	}
	hooks, err := hookdir.List(c.Root, HookDirs...)
	if err != nil {
		return fmt.Sprintf("health hooks: %v", err)
	}
	for _, h := range hooks {
		name, p := h.Name, filepath.Join(c.Root, h.Path)
		start := time.Now()
		hctx, cancel := context.WithTimeout(ctx, timeout)
		cmd := exec.CommandContext(hctx, p)
		cmd.Env = append(os.Environ(), bootstate.CmdlineKey+"="+c.Running, "MKIMAGE_VERSION="+c.Running)
		cmd.WaitDelay = 5 * time.Second
		out, err := cmd.CombinedOutput()
		cancel()
		last := ""
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			c.Log("check %s: %s", name, sc.Text())
			if t := strings.TrimSpace(sc.Text()); t != "" {
				last = t
			}
		}
		if hctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("no answer in %v", timeout)
		}
		if err != nil {
			why := fmt.Sprintf("health check %s failed: %v", name, err)
			if last != "" {
				why += " (" + last + ")"
			}
			c.Log("%s", why)
			return why
		}
		c.Log("check %s passed (%v)", name, time.Since(start).Round(time.Millisecond))
	}
	return ""
}

// lastLine is the last non-empty line of the file at p, "" if none.
func lastLine(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// appendLine adds line to the small record at p, atomically.
func appendLine(p, line string) error {
	b, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return atomicfile.WriteFile(p, append(b, line+"\n"...), 0o644)
}
