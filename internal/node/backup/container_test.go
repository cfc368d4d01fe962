package backup

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/cluster/plan"
	"github.com/mkimage/mkimage/internal/node/btrfsctl"
	"github.com/mkimage/mkimage/internal/testenv"
)

// The child process of TestRestoreContainer: a restore killed at one step
// (env MKIMAGE_TEST_CUT), the node's root MKIMAGE_TEST_ROOT and its
// plan.Backup MKIMAGE_TEST_NODE (JSON).
func TestRestoreContainerChild(t *testing.T) {
	step, spec := os.Getenv("MKIMAGE_TEST_CUT"), os.Getenv("MKIMAGE_TEST_NODE")
	if step == "" {
		t.Skip("the child of TestRestoreContainer")
	}
	var n Node
	if err := json.Unmarshal([]byte(spec), &n.Config); err != nil {
		t.Fatal(err)
	}
	n.Root, n.Log = os.Getenv("MKIMAGE_TEST_ROOT"), t.Logf
	cut = testenv.KillAt(step)
	t.Fatal(n.RestoreContainer(context.Background(), "c1", ""))
}

// A container comes back from the target: on its own node after its
// files changed, even when the restore is killed at any step (the
// container's directory is always whole, and the next restore
// succeeds), and on a freshly made node restoring the first one's
// backups (From).
func TestRestoreContainer(t *testing.T) {
	needEnv(t)
	srv := startSSHD(t)
	fsys := testenv.ScratchBtrfs(t)
	targetDir := filepath.Join(fsys, "backups")
	if err := os.Mkdir(targetDir, 0o700); err != nil {
		t.Fatal(err)
	}
	newNode := func(name string) Node {
		root := filepath.Join(fsys, name)
		for _, d := range []string{"var/lib", ".snapshots", filepath.Dir(KeyFile)} {
			if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := btrfsctl.Create(filepath.Join(root, ContainersSubvolume)); err != nil {
			t.Fatal(err)
		}
		for src, dst := range map[string]string{srv.Identity: KeyFile, srv.KnownHosts: KnownHostsFile} {
			data, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, dst), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return Node{Root: root, Log: t.Logf, Config: &plan.Backup{Subvolume: ContainersSubvolume, Dir: "/.snapshots", Containers: true,
			Target: &plan.BackupTarget{Host: "root@127.0.0.1", Port: srv.Port, Dir: filepath.Join(targetDir, name)}}}
	}
	a := newNode("n1")
	lxc := filepath.Join(a.Root, ContainersSubvolume)
	put := func(rel, data string) {
		t.Helper()
		p := filepath.Join(lxc, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	put("c1/config", "lxc.uts.name = c1\n")
	put("c1/rootfs/data", "backed up")
	put("c1/rootfs/big", string(random(t, 8<<20)))
	put("c2/config", "lxc.uts.name = c2\n")
	nd := &node{t: t, root: lxc, snap: filepath.Join(a.Root, ".snapshots"), prefix: Prefix(ContainersSubvolume)}
	snap := nd.snapshot()
	if _, err := a.ExportAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ls, err := a.ListAll(context.Background()); err != nil || len(ls) != 1 || ls[0].Subvolume != ContainersSubvolume || strings.Join(ls[0].Names, " ") != snap {
		t.Errorf("ListAll: %+v, %v; want %s of %s", ls, err, snap, ContainersSubvolume)
	}

	// check says what the node's containers are: c1 with data, c2, and
	// nothing else LXC would take for a container.
	check := func(when, data string) {
		t.Helper()
		if got, err := os.ReadFile(filepath.Join(lxc, "c1/rootfs/data")); string(got) != data {
			t.Errorf("%s: c1 holds %q (%v), want %q", when, got, err, data)
		}
		ents, err := os.ReadDir(lxc)
		if err != nil {
			t.Fatal(err)
		}
		var cs []string
		for _, e := range ents {
			if _, err := os.Stat(filepath.Join(lxc, e.Name(), "config")); err == nil {
				cs = append(cs, e.Name())
			}
		}
		if strings.Join(cs, " ") != "c1 c2" {
			t.Errorf("%s: LXC would find containers %v, want c1 c2", when, cs)
		}
	}

	for _, step := range []string{"copy", "copied", "exchanged"} {
		put("c1/rootfs/data", "changed")
		if step == "copy" {
			// What a copy cut half way by an earlier kill left.
			put(".mkimage-restoring/c1/config", "lxc.uts.name = c1\n")
			put(".mkimage-restoring/c1/rootfs/big", "part")
		}
		spec, err := json.Marshal(a.Config)
		if err != nil {
			t.Fatal(err)
		}
		testenv.RunKilled(t, "TestRestoreContainerChild", "MKIMAGE_TEST_CUT="+step, "MKIMAGE_TEST_NODE="+string(spec), "MKIMAGE_TEST_ROOT="+a.Root)
		want := "changed"
		if step == "exchanged" {
			want = "backed up"
		}
		check("killed at "+step, want)
		if err := a.RestoreContainer(context.Background(), "c1", ""); err != nil {
			t.Fatalf("restore after the kill at %s: %v", step, err)
		}
		check("restored after the kill at "+step, "backed up")
		if ents, _ := os.ReadDir(a.RestoringDir()); len(ents) != 0 {
			t.Errorf("after the restore, %s holds %d entries", a.RestoringDir(), len(ents))
		}
	}

	// A new node takes over n1's container from n1's backups.
	b := newNode("n2")
	b.From = "n1"
	if _, err := b.ExportAll(context.Background()); err == nil || !strings.Contains(err.Error(), "only its own") {
		t.Errorf("exporting as another node: %v", err)
	}
	if ls, err := b.ListAll(context.Background()); err != nil || len(ls) != 1 || strings.Join(ls[0].Names, " ") != snap {
		t.Errorf("ListAll of n1's backups: %+v, %v; want %s", ls, err, snap)
	}
	if err := b.RestoreContainer(context.Background(), "c1", ""); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(b.Root, ContainersSubvolume, "c1/rootfs/data")); string(got) != "backed up" {
		t.Errorf("n2's c1 holds %q (%v)", got, err)
	}
	if _, err := os.Stat(filepath.Join(b.Root, ".snapshots/restored/from-n1")); err != nil {
		t.Errorf("n1's snapshot is not in n2's restored/from-n1: %v", err)
	}
	if _, err := os.Stat(filepath.Join(targetDir, "n2")); !os.IsNotExist(err) {
		t.Errorf("restoring n1's container made n2's directory on the target: %v", err)
	}
}

func TestNodeFrom(t *testing.T) {
	n := Node{Root: "/", Config: &plan.Backup{Subvolume: "/", Dir: "/.snapshots", Containers: true,
		Target: &plan.BackupTarget{Host: "b@192.0.2.1", Dir: "/srv/b/n2"}}}
	for _, tc := range []struct{ from, dir, restored, err string }{
		{"", "/srv/b/n2", "/.snapshots/restored", ""},
		{"n1", "/srv/b/n1", "/.snapshots/restored/from-n1", ""},
		{"..", "", "", "want a node's name"},
		{"a/b", "", "", "want a node's name"},
		{"a b", "", "", "want a node's name"},
	} {
		n.From = tc.from
		o, err := n.Options("/")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("from %q: %v, want %q", tc.from, err, tc.err)
			}
			continue
		}
		if err != nil || o.Target.Dir != tc.dir || n.RestoredDir() != tc.restored {
			t.Errorf("from %q: dir %q restored %q (%v), want %q %q", tc.from, o.Target.Dir, n.RestoredDir(), err, tc.dir, tc.restored)
		}
	}
}
