package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/mkimage/mkimage/internal/atomicfile"
)

// Policy writes into two kinds of roots: the node's, and the root of a
// container that runs one of the node's daemons (plan.Container.Runs).
// The second is not trusted (a compromised haproxy can plant symlinks in
// it), so every name is resolved in an os.Root: a link that leads out of
// the tree is an error, never a write into the node's files. The node's
// root goes through the same helpers.

// exists reports whether rel is in r (a dangling symlink counts).
func exists(r *os.Root, rel string) bool {
	_, err := r.Lstat(rel)
	return err == nil
}

func hasSystemd(r *os.Root) bool {
	return exists(r, "lib/systemd/systemd") || exists(r, "usr/lib/systemd/systemd")
}

// symlink makes link (in r) point to target, replacing whatever link was.
func symlink(r *os.Root, target, link string) error {
	if cur, err := r.Readlink(link); err == nil && cur == target {
		return nil
	}
	if err := r.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return err
	}
	r.Remove(link)
	return r.Symlink(target, link)
}

func removeIfExists(r *os.Root, rel string) error {
	if err := r.Remove(rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// daemonRoot opens the root daemon (plan.RunsHAProxy, plan.RunsI2PD)
// runs in: the node's own (where is "") or, when the plan has a
// container run it, that container's. Either way the node's own copy of
// the daemon is kept from starting, or allowed to again (keepOff). The
// caller closes the root.
func daemonRoot(env Env, node *os.Root, daemon string) (r *os.Root, where string, err error) {
	if err := keepOff(node, daemon, env.Node.RunsIn(daemon)); err != nil {
		return nil, "", fmt.Errorf("keeping the node's %s off: %w", daemon, err)
	}
	return openDaemonRoot(env, node, daemon)
}

// openDaemonRoot is daemonRoot without keepOff: it writes nothing.
func openDaemonRoot(env Env, node *os.Root, daemon string) (r *os.Root, where string, err error) {
	ct := env.Node.RunsIn(daemon)
	if ct == "" {
		r, err := node.OpenRoot(".")
		return r, "", err
	}
	r, err = node.OpenRoot(filepath.Join("var/lib/lxc", ct, "rootfs"))
	if err != nil {
		return nil, "", fmt.Errorf("container %s, which runs %s: %w", ct, daemon, err)
	}
	return r, "container " + ct, nil
}

// reportRoot opens the root daemon runs in, for the report.
func reportRoot(env Env, daemon string) (r *os.Root, where string, err error) {
	node, err := os.OpenRoot(env.Root)
	if err != nil {
		return nil, "", err
	}
	defer node.Close()
	return openDaemonRoot(env, node, daemon)
}

// keepOffDropIn is the systemd drop-in that keeps the node's own daemon
// from starting while a container runs it: both would bind the same
// ports in the node's network. The package stays installed and its
// postinst may enable it; the condition holds it off regardless.
func keepOffDropIn(daemon string) string {
	return filepath.Join("etc/systemd/system", daemon+".service.d", "mkimage-runs-in-container.conf")
}

// keepOff writes keepOffDropIn for the container ct that runs daemon, or
// removes it when ct is "" (the node runs it). A root without systemd
// loses the daemon's rc links instead; they come back with the package's
// next configuration, not from here.
func keepOff(node *os.Root, daemon, ct string) error {
	p := keepOffDropIn(daemon)
	if ct == "" {
		return removeIfExists(node, p)
	}
	if !hasSystemd(node) {
		_, err := enableService(node, daemon, false)
		return err
	}
	// "!/": the root always exists, so the condition never holds.
	conf := fmt.Sprintf("%s# %s runs in container %s (cluster config: runs), not on the node.\n[Unit]\nConditionPathExists=!/\n", generated, daemon, ct)
	return atomicfile.WriteFileIfChangedIn(node, p, []byte(conf), 0o644)
}

// label names a root in logs and the report.
func label(where string) string {
	if where == "" {
		return "the root"
	}
	return where + "'s root"
}

// inRoot is " in WHERE" for report lines, "" for the node's own root.
func inRoot(where string) string {
	if where == "" {
		return ""
	}
	return " in " + where
}
