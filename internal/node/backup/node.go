package backup

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
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
	// From, when set, is another node of the inventory whose backups
	// this one lists and restores (a freshly flashed card taking over a
	// dead node's containers): the target holds one directory per node,
	// DIR/NAME, and the other node's is its sibling. Such a Node never
	// exports.
	From string
}

// Options are the export options of one subvolume's snapshots.
func (n Node) Options(subvolume string) (Options, error) {
	t := n.Config.Target
	if t == nil {
		return Options{}, fmt.Errorf("backup: no [backup.target] in the cluster config for this node")
	}
	dir := t.Dir
	if n.From != "" {
		if n.From == "." || n.From == ".." || strings.ContainsAny(n.From, "/ \t\n") {
			return Options{}, fmt.Errorf("backup: from %q: want a node's name", n.From)
		}
		dir = path.Join(path.Dir(t.Dir), n.From)
	}
	return Options{
		SnapshotDir: filepath.Join(n.Root, n.Config.Dir),
		Prefix:      Prefix(subvolume),
		Target: Target{
			Host: t.Host, Port: t.Port, Dir: dir,
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
	if n.From != "" {
		return nil, fmt.Errorf("backup: a node exports only its own snapshots, not %s's", n.From)
	}
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

// Listing is what the target holds of one scheduled subvolume.
type Listing struct {
	Subvolume string
	Options   Options // its prefix and target
	Kind      Kind
	Names     []string // the complete snapshots, oldest first
}

// ListAll lists what the target holds of each scheduled subvolume.
func (n Node) ListAll(ctx context.Context) ([]Listing, error) {
	var ls []Listing
	for _, sv := range Subvolumes(n.Config) {
		o, err := n.Options(sv)
		if err != nil {
			return ls, err
		}
		names, kind, err := List(ctx, o)
		if err != nil {
			return ls, err
		}
		ls = append(ls, Listing{Subvolume: sv, Options: o, Kind: kind, Names: names})
	}
	return ls, nil
}

// RestoredDir is where restores go by default: the snapshot
// directory's restored/, beside the node's own snapshots but not among
// them (an export never takes a restored snapshot for one of its own);
// another node's go into restored/from-NAME (nodes snapshot on the same
// schedule, so their snapshots' names meet).
func (n Node) RestoredDir() string {
	d := filepath.Join(n.Root, n.Config.Dir, "restored")
	if n.From != "" {
		d = filepath.Join(d, "from-"+n.From)
	}
	return d
}

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
// snapshot is restored beside the node's own (RestoredDir, reused if an
// earlier restore brought it) and the container copied out of it
// (reflinked where the filesystem can) while the container still runs.
// Only then is it stopped, the copy exchanged with its directory in one
// rename, and started again if it ran. A power cut at any point leaves
// the container's directory whole, the old one or the restored one; the
// copy (or the old directory after the exchange) waits under
// RestoringDir, where LXC does not look for containers, and the next
// restore removes it.
func (n Node) RestoreContainer(ctx context.Context, name, snapshot string) error {
	if err := checkName(name); err != nil {
		return fmt.Errorf("backup: %w", err)
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
	lxc := n.lxcPath()
	staging := filepath.Join(n.RestoringDir(), name)
	if err := os.RemoveAll(staging); err != nil {
		return err
	}
	if err := os.MkdirAll(n.RestoringDir(), 0o700); err != nil {
		return err
	}
	cut("copy")
	if err := command(ctx, "cp", "-a", "--reflink=auto", "--", src, staging); err != nil {
		os.RemoveAll(staging)
		return err
	}
	// The copy is on disk before it takes the container's place.
	if err := atomicfile.SyncFS(lxc); err != nil {
		return err
	}
	cut("copied")
	dst := filepath.Join(lxc, name)
	running := n.running(ctx, name)
	if running {
		if err := n.lxc(ctx, "stop", name); err != nil {
			return err
		}
	}
	if err := atomicfile.Exchange(staging, dst); err != nil {
		if running {
			if serr := n.lxc(ctx, "start", name); serr != nil {
				err = fmt.Errorf("%w; starting it again: %w", err, serr)
			}
		}
		return err
	}
	cut("exchanged")
	if running {
		if err := n.lxc(ctx, "start", name); err != nil {
			return fmt.Errorf("%w (the restored copy stays; the one before is %s)", err, staging)
		}
	}
	n.Log("backup: container %s restored from %s%s", name, snapshot, map[bool]string{true: " and started", false: ""}[running])
	return os.RemoveAll(staging)
}

// RestoringDir holds RestoreContainer's copy until it takes the
// container's place, and the container's old directory after: in
// ContainersSubvolume (one filesystem, so the exchange is a rename) but
// one level below the containers, where LXC never finds a config to
// start.
func (n Node) RestoringDir() string {
	return filepath.Join(n.lxcPath(), ".mkimage-restoring")
}

// cut is where tests stop a restore as a power cut would.
var cut = func(step string) {}

// command runs one of the node's programs (LXC's, cp), its output in
// the error.
func command(ctx context.Context, argv ...string) error {
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
