package backup

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
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
