package backup

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/atomicfile"
	"github.com/mkimage/mkimage/internal/cluster/plan"
)

// The files of a node's backup in its root (relative paths): nodeinit's
// policy writes the first three from the cluster config at every boot
// (the key only once, at first boot), `nodeinit backup export` reads
// them and writes the last.
const (
	ConfigFile     = "etc/mkimage/backup.json" // the node's plan.Backup
	KeyFile        = "var/lib/mkimage/backup/id_ed25519"
	KnownHostsFile = "var/lib/mkimage/backup/known_hosts"
	StatusFile     = "var/lib/mkimage/backup/last-export"
)

// ContainersSubvolume is the containers' own subvolume, snapshotted
// beside the configured one when plan.Backup.Containers is set.
const ContainersSubvolume = "/var/lib/lxc"

// Prefix is the snapshot name prefix of a subvolume: "root" for "/",
// else its path with dashes ("var-lib-lxc").
func Prefix(subvolume string) string {
	p := strings.Trim(strings.ReplaceAll(subvolume, "/", "-"), "-")
	if p == "" {
		return "root"
	}
	return p
}

// Subvolumes are what the schedule snapshots, in order.
func Subvolumes(b *plan.Backup) []string {
	s := []string{b.Subvolume}
	if b.Containers && b.Subvolume != ContainersSubvolume {
		s = append(s, ContainersSubvolume)
	}
	return s
}

// KnownHosts is the known_hosts file that accepts only the target's host
// keys.
func KnownHosts(t *plan.BackupTarget) string {
	_, host, _ := strings.Cut(t.Host, "@")
	if t.Port != 0 && t.Port != 22 {
		host = "[" + host + "]:" + strconv.Itoa(t.Port)
	}
	var b strings.Builder
	for _, k := range t.HostKeys {
		f := strings.Fields(k)
		if len(f) < 2 {
			continue
		}
		fmt.Fprintf(&b, "%s %s %s\n", host, f[0], f[1])
	}
	return b.String()
}

// LoadConfig reads the node's backup settings from the root at root.
func LoadConfig(root string) (*plan.Backup, error) {
	data, err := os.ReadFile(filepath.Join(root, ConfigFile))
	if err != nil {
		return nil, fmt.Errorf("backup: %w (no [backup] in the cluster config this node booted with?)", err)
	}
	var b plan.Backup
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("backup: /%s: %w", ConfigFile, err)
	}
	return &b, nil
}

// Node is a node's backup as its root configures it.
type Node struct {
	Root   string // "/" on the node
	Config *plan.Backup
	Log    func(format string, a ...any)
}

// Options are the export options of one subvolume's snapshots.
func (n Node) Options(subvolume string) (Options, error) {
	t := n.Config.Target
	if t == nil {
		return Options{}, fmt.Errorf("backup: no [backup.target] in the cluster config for this node")
	}
	return Options{
		SnapshotDir: filepath.Join(n.Root, n.Config.Dir),
		Prefix:      Prefix(subvolume),
		Target: Target{
			Host: t.Host, Port: t.Port, Dir: t.Dir,
			Identity:   filepath.Join(n.Root, KeyFile),
			KnownHosts: filepath.Join(n.Root, KnownHostsFile),
		},
		Keep: t.Keep,
		Log:  n.Log,
	}, nil
}

// ExportAll exports every scheduled subvolume's snapshots and records
// the outcome in StatusFile (time, then "ok" or the error), so a failed
// export is seen without the journal. It goes on after a subvolume
// fails and returns the first error.
func (n Node) ExportAll(ctx context.Context) ([]Summary, error) {
	var sums []Summary
	var first error
	for _, sv := range Subvolumes(n.Config) {
		o, err := n.Options(sv)
		if err == nil {
			var s Summary
			s, err = Export(ctx, o)
			sums = append(sums, s)
		}
		if err != nil && first == nil {
			first = fmt.Errorf("%s: %w", sv, err)
		}
	}
	status := "ok"
	if first != nil {
		status = first.Error()
	}
	line := time.Now().UTC().Format(time.RFC3339) + " " + status + "\n"
	if err := atomicfile.WriteFile(filepath.Join(n.Root, StatusFile), []byte(line), 0o644); err != nil && first == nil {
		first = err
	}
	return sums, first
}

// RestoredDir is where restores go by default: the snapshot
// directory's restored/, beside the node's own snapshots but not among
// them (an export never takes a restored snapshot for one of its own).
func (n Node) RestoredDir() string { return filepath.Join(n.Root, n.Config.Dir, "restored") }

// Restore brings snapshot name (of whichever scheduled subvolume its
// prefix names) back from the target into dir, "" for RestoredDir
// (made if missing), and returns its path.
func (n Node) Restore(ctx context.Context, name, dir string) (string, error) {
	var o Options
	for _, sv := range Subvolumes(n.Config) {
		if strings.HasPrefix(name, Prefix(sv)+"-") {
			var err error
			if o, err = n.Options(sv); err != nil {
				return "", err
			}
		}
	}
	if o.Prefix == "" {
		return "", fmt.Errorf("backup: %q is not a snapshot of %s (names are PREFIX-YYYYMMDD-HHMMSS; see nodeinit backup list)", name, strings.Join(Subvolumes(n.Config), " or "))
	}
	if dir == "" {
		dir = n.RestoredDir()
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", err
		}
	}
	if err := Restore(ctx, o, name, dir); err != nil {
		return "", err
	}
	return filepath.Join(dir, name), nil
}

// RestoreContainer brings container name back to what snapshot (of
// ContainersSubvolume; "" for the newest the target holds) had: the
// snapshot is restored beside the node's own (restored/, reused if an
// earlier restore brought it), the container stopped if it runs, its
// directory set aside, the snapshot's copy put in its place (reflinked
// where the filesystem can) and the container started again if it ran.
// A failure puts the set-aside directory back.
func (n Node) RestoreContainer(ctx context.Context, name, snapshot string) error {
	if name == "" || strings.ContainsAny(name, "/") || strings.HasPrefix(name, ".") {
		return fmt.Errorf("backup: container %q: want a container's name", name)
	}
	if !n.Config.Containers {
		return fmt.Errorf("backup: containers are not backed up on this node ([backup] containers)")
	}
	o, err := n.Options(ContainersSubvolume)
	if err != nil {
		return err
	}
	if snapshot == "" {
		names, _, err := List(ctx, o)
		if err != nil {
			return err
		}
		if len(names) == 0 {
			return fmt.Errorf("backup: the target %s holds no snapshot of %s", o.Target, ContainersSubvolume)
		}
		snapshot = names[len(names)-1]
	}
	snapDir := filepath.Join(n.RestoredDir(), snapshot)
	if _, err := os.Stat(snapDir); err != nil {
		if snapDir, err = n.Restore(ctx, snapshot, ""); err != nil {
			return err
		}
	}
	src := filepath.Join(snapDir, name)
	if _, err := os.Stat(filepath.Join(src, "config")); err != nil {
		return fmt.Errorf("backup: snapshot %s has no container %s: %w", snapshot, name, err)
	}
	dst := filepath.Join(n.Root, ContainersSubvolume, name)
	running := lxcState(ctx, name) == "RUNNING"
	if running {
		if err := command(ctx, "lxc-stop", "-n", name); err != nil {
			return err
		}
	}
	aside := filepath.Join(n.Root, ContainersSubvolume, "."+name+".before-restore")
	if err := os.RemoveAll(aside); err != nil {
		return err
	}
	had := true
	if err := os.Rename(dst, aside); err != nil {
		if !os.IsNotExist(err) {
			return err
		}
		had = false
	}
	if err := command(ctx, "cp", "-a", "--reflink=auto", "--", src, dst); err != nil {
		os.RemoveAll(dst)
		if had {
			os.Rename(aside, dst)
		}
		return err
	}
	if running {
		if err := command(ctx, "lxc-start", "-n", name); err != nil {
			return fmt.Errorf("%w (the restored copy stays; the one before is %s)", err, aside)
		}
	}
	n.Log("backup: container %s restored from %s%s", name, snapshot, map[bool]string{true: " and started", false: ""}[running])
	return os.RemoveAll(aside)
}

// command runs one of the node's programs (LXC's, cp), its output in
// the error.
func command(ctx context.Context, argv ...string) error {
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func lxcState(ctx context.Context, name string) string {
	out, _ := exec.CommandContext(ctx, "lxc-info", "-n", name, "-sH").Output()
	return strings.TrimSpace(string(out))
}
