package backup

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/cluster/plan"
	"github.com/mkimage/mkimage/internal/node/btrfsctl"
	"github.com/mkimage/mkimage/internal/testenv"
)

// startSSHD is the target's sshd; target points at dir on it.
type sshd struct{ testenv.SSHD }

func startSSHD(t *testing.T) sshd { return sshd{testenv.StartSSHD(t, "127.0.0.1")} }

func (s sshd) target(dir string) Target {
	return Target{Host: "root@127.0.0.1", Port: s.Port, Identity: s.Identity, KnownHosts: s.KnownHosts, Dir: dir}
}

func needEnv(t *testing.T) {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "btrfs", "mkfs.btrfs", "mount", "umount", "findmnt", "losetup",
		"ssh", "ssh-keygen", "zstd", "flock", "sha256sum")
	testenv.NeedFile(t, "/usr/sbin/sshd")
}

// node is the node's side of a test: a root subvolume and its snapshots.
type node struct {
	t          *testing.T
	root, snap string
	prefix     string
	n          int
}

func (nd *node) write(name string, data []byte) {
	nd.t.Helper()
	if err := os.WriteFile(filepath.Join(nd.root, name), data, 0o644); err != nil {
		nd.t.Fatal(err)
	}
}

// snapshot takes the next read-only snapshot, as the policy's script does
// (names one second apart so they sort).
func (nd *node) snapshot() string {
	nd.t.Helper()
	nd.n++
	name := fmt.Sprintf("%s-20260102-0300%02d", nd.prefix, nd.n)
	if err := btrfsctl.Snapshot(nd.root, filepath.Join(nd.snap, name), true); err != nil {
		nd.t.Fatal(err)
	}
	return name
}

func random(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		t.Fatal(err)
	}
	return b
}

// complete lists what the target directory holds that a restore can use,
// judged on the target's filesystem directly (not through the package):
// received subvolumes with a Received UUID, or final-named stream files.
// Anything else of the prefix is returned in bad.
func onTarget(t *testing.T, kind Kind, dir, prefix string) (good, bad []string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ents {
		n := d.Name()
		if !strings.HasPrefix(n, prefix+"-") {
			continue
		}
		if kind == KindBtrfs {
			info, err := btrfsctl.Stat(filepath.Join(dir, n))
			if err != nil || !info.Received() || !info.ReadOnly {
				bad = append(bad, n)
				continue
			}
		} else if strings.HasSuffix(n, ".part") {
			bad = append(bad, n)
			continue
		}
		good = append(good, n)
	}
	sort.Strings(good)
	return good, bad
}

func TestExportRestore(t *testing.T) {
	needEnv(t)
	srv := startSSHD(t)
	btrfsTarget := testenv.ScratchBtrfs(t)

	// The file target: a directory on the test's own filesystem, which
	// must not be btrfs for the test to mean anything.
	fileTarget := filepath.Join(t.TempDir(), "files")
	if err := os.Mkdir(fileTarget, 0o700); err != nil {
		t.Fatal(err)
	}
	if btrfsctl.Is(fileTarget) {
		t.Skipf("%s is on btrfs: no file target to test", fileTarget)
	}
	if err := os.Mkdir(filepath.Join(btrfsTarget, "backups"), 0o700); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		kind Kind
		dir  string
	}{
		// Each node's own directory under the target's is made by the
		// first export.
		{KindBtrfs, filepath.Join(btrfsTarget, "backups", "n1")},
		{KindFiles, filepath.Join(fileTarget, "n1")},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			testKind(t, srv, testenv.ScratchBtrfs(t), tc.kind, tc.dir)
		})
	}

	t.Run("UnknownHostKey", func(t *testing.T) {
		tg := srv.target(fileTarget)
		tg.KnownHosts = filepath.Join(srv.Dir, "known_hosts_other")
		for _, kh := range []string{tg.KnownHosts, filepath.Join(srv.Dir, "empty_known_hosts")} {
			tg.KnownHosts = kh
			if err := os.WriteFile(filepath.Join(srv.Dir, "empty_known_hosts"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			snaps := t.TempDir()
			_, err := Export(context.Background(), Options{SnapshotDir: snaps, Prefix: "hk", Target: tg})
			if !errors.Is(err, ErrHostKey) || !strings.Contains(err.Error(), "Host key verification failed") {
				t.Errorf("known_hosts %s: export to a host with another key: %v, want ErrHostKey", filepath.Base(kh), err)
			} else {
				t.Logf("refused: %v", err)
			}
		}
	})
}

func testKind(t *testing.T, srv sshd, nodeFS string, kind Kind, dir string) {
	prefix := "n" + string(kind)
	nd := &node{t: t, root: filepath.Join(nodeFS, prefix+"-root"), snap: filepath.Join(nodeFS, prefix+"-snaps"), prefix: prefix}
	if err := btrfsctl.Create(nd.root); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(nd.snap, 0o755); err != nil {
		t.Fatal(err)
	}
	o := Options{SnapshotDir: nd.snap, Prefix: prefix, Target: srv.target(dir), Log: t.Logf}
	export := func(o Options) Summary {
		t.Helper()
		sum, err := Export(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		if sum.Kind != kind {
			t.Fatalf("target kind %q, want %q", sum.Kind, kind)
		}
		return sum
	}
	// restore brings name back into a fresh directory, lets check look
	// at it, and deletes it (the node's filesystem is small).
	restore := func(name string, check func(dir string)) {
		t.Helper()
		into, err := os.MkdirTemp(nodeFS, "restore-")
		if err != nil {
			t.Fatal(err)
		}
		if err := Restore(context.Background(), o, name, into); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(into, name)
		check(dir)
		if err := btrfsctl.Delete(dir); err != nil {
			t.Error(err)
		}
		if ents, _ := os.ReadDir(into); len(ents) != 0 {
			t.Errorf("restore left %v beside %s", ents, name)
		}
	}

	// (1) The first export sends a full stream.
	nd.write("small", []byte("v1"))
	nd.write("gone", []byte("deleted on the node later"))
	nd.write("data", random(t, 2<<20))
	s1 := nd.snapshot()
	sum := export(o)
	if len(sum.Sent) != 1 || sum.Sent[0].Name != s1 || sum.Sent[0].Parent != "" || sum.Sent[0].Bytes < 2<<20 {
		t.Fatalf("first export: %+v, want a full %s", sum.Sent, s1)
	}
	full, fullStored := sum.Sent[0].Bytes, sum.Sent[0].Stored
	if names, k, err := List(context.Background(), o); err != nil || k != kind || len(names) != 1 || names[0] != s1 {
		t.Errorf("List after the first export: %v %s %v, want [%s]", names, k, err, s1)
	}

	// (2) A small change: the next export is incremental and small.
	nd.write("small", []byte("v2"))
	if err := os.Remove(filepath.Join(nd.root, "gone")); err != nil {
		t.Fatal(err)
	}
	s2 := nd.snapshot()
	sum = export(o)
	if len(sum.Sent) != 1 || sum.Sent[0].Name != s2 || sum.Sent[0].Parent != s1 {
		t.Fatalf("second export: %+v, want %s from %s", sum.Sent, s2, s1)
	}
	inc := sum.Sent[0].Bytes
	t.Logf("%s target: full %d bytes (%d stored), incremental %d bytes (%d stored)", kind, full, fullStored, inc, sum.Sent[0].Stored)
	if inc*50 > full {
		t.Errorf("incremental %d bytes, full %d: want far smaller", inc, full)
	}
	if sum = export(o); len(sum.Sent) != 0 {
		t.Errorf("an export with nothing new sent %+v", sum.Sent)
	}

	// (3) The file deleted on the node comes back from the older
	// snapshot; the newer one restores as it was.
	restore(s1, func(dir string) {
		if b, err := os.ReadFile(filepath.Join(dir, "gone")); err != nil || string(b) != "deleted on the node later" {
			t.Errorf("restored %s: gone = %q, %v", s1, b, err)
		}
	})
	// A restore cut half way left a writable subvolume without a
	// Received UUID under the name: the next restore replaces it.
	into, err := os.MkdirTemp(nodeFS, "restore-")
	if err != nil {
		t.Fatal(err)
	}
	if err := btrfsctl.Create(filepath.Join(into, s1)); err != nil {
		t.Fatal(err)
	}
	if err := Restore(context.Background(), o, s1, into); err != nil {
		t.Errorf("restore over a cut restore's leftover: %v", err)
	} else if info, err := btrfsctl.Stat(filepath.Join(into, s1)); err != nil || !info.Received() {
		t.Errorf("restored %s: %+v, %v", s1, info, err)
	}
	btrfsctl.Delete(filepath.Join(into, s1))
	restore(s2, func(dir string) {
		if b, _ := os.ReadFile(filepath.Join(dir, "small")); string(b) != "v2" {
			t.Errorf("restored %s: small = %q", s2, b)
		}
		if _, err := os.Stat(filepath.Join(dir, "gone")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("restored %s holds the file deleted before it: %v", s2, err)
		}
		if err := Restore(context.Background(), o, s2, filepath.Dir(dir)); err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Errorf("restore over an existing %s: %v, want a refusal", s2, err)
		}
	})

	// (4, 5) An export cut half way leaves only complete snapshots; the
	// next one completes.
	nd.write("big", random(t, 50<<20))
	s3 := nd.snapshot()
	ctx, cancel := context.WithCancel(context.Background())
	cut := o
	cut.Progress = func(name string, n int64) {
		if name == s3 && n > 8<<20 {
			cancel()
		}
	}
	_, err = Export(ctx, cut)
	cancel()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cut export: %v, want context.Canceled", err)
	}
	t.Logf("cut export: %v", err)
	good, bad := onTarget(t, kind, dir, prefix)
	if len(bad) > 0 {
		t.Errorf("after the cut export the target holds incomplete %q", bad)
	}
	for _, g := range good {
		if strings.HasPrefix(g, s3) {
			t.Errorf("after the cut export the target holds %s", g)
		}
	}
	// What a cut leaves when nothing cleans up after it (the node lost
	// power): the next export deletes it first.
	var left string
	if kind == KindBtrfs {
		left = s3
		if err := btrfsctl.Create(filepath.Join(dir, left)); err != nil {
			t.Fatal(err)
		}
	} else {
		left = fileName(s3, s2) + ".part"
		if err := os.WriteFile(filepath.Join(dir, left), []byte("cut"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sum = export(o)
	if len(sum.Sent) != 1 || sum.Sent[0].Name != s3 || sum.Sent[0].Parent != s2 {
		t.Fatalf("export after the cut: %+v, want %s from %s", sum.Sent, s3, s2)
	}
	if fmt.Sprint(sum.Cleaned) != fmt.Sprint([]string{left}) {
		t.Errorf("export after the cut cleaned %q, want %q", sum.Cleaned, left)
	}
	good, bad = onTarget(t, kind, dir, prefix)
	want := []string{s1, s2, s3}
	if kind == KindFiles {
		want = []string{fileName(s1, ""), fileName(s2, s1), fileName(s3, s2)}
	}
	if fmt.Sprint(good) != fmt.Sprint(want) || len(bad) > 0 {
		t.Errorf("target after the export: %q (incomplete %q), want %q", good, bad, want)
	}
	if kind == KindFiles { // the whole chain restores
		restore(s3, func(dir string) {
			if st, err := os.Stat(filepath.Join(dir, "big")); err != nil || st.Size() != 50<<20 {
				t.Errorf("restored %s: big: %v", s3, err)
			}
		})
	}

	// (6) Retention: keep the newest 2, never breaking a chain.
	o.Keep = 2
	nd.write("small", []byte("v4"))
	s4 := nd.snapshot()
	sum = export(o)
	t.Logf("keep 2, after %s: sent %+v, pruned %q", s4, sum.Sent, sum.Pruned)
	good, _ = onTarget(t, kind, dir, prefix)
	want = []string{s3, s4}
	if kind == KindFiles {
		// s3's chain pins s1 and s2; s4 starts a new chain (the old
		// one reached MaxChain = Keep files).
		want = []string{fileName(s1, ""), fileName(s2, s1), fileName(s3, s2), fileName(s4, "")}
	}
	if fmt.Sprint(good) != fmt.Sprint(want) {
		t.Errorf("target after pruning to 2: %q, want %q", good, want)
	}
	nd.write("small", []byte("v5"))
	s5 := nd.snapshot()
	sum = export(o)
	t.Logf("keep 2, after %s: sent %+v, pruned %q", s5, sum.Sent, sum.Pruned)
	good, _ = onTarget(t, kind, dir, prefix)
	want = []string{s4, s5}
	if kind == KindFiles {
		want = []string{fileName(s4, ""), fileName(s5, s4)}
	}
	if fmt.Sprint(good) != fmt.Sprint(want) {
		t.Errorf("target after pruning to 2: %q, want %q", good, want)
	}
	restore(s5, func(dir string) {
		if b, _ := os.ReadFile(filepath.Join(dir, "small")); string(b) != "v5" {
			t.Errorf("restored %s after pruning: small = %q", s5, b)
		}
	})
}

// TestPrunable: retention on stream files keeps every file a kept
// snapshot's chain needs, and drops files whose chain is broken.
func TestPrunable(t *testing.T) {
	n, err := newNames("r")
	if err != nil {
		t.Fatal(err)
	}
	s := func(i int) string { return fmt.Sprintf("r-20260101-0000%02d", i) }
	for _, tc := range []struct {
		files []string
		keep  int
		want  []string
	}{
		{[]string{fileName(s(1), ""), fileName(s(2), s(1)), fileName(s(3), s(2))}, 1, nil},
		{[]string{fileName(s(1), ""), fileName(s(2), s(1)), fileName(s(3), "")}, 1, []string{fileName(s(1), ""), fileName(s(2), s(1))}},
		{[]string{fileName(s(1), ""), fileName(s(2), s(1)), fileName(s(3), ""), fileName(s(4), s(3))}, 2, []string{fileName(s(1), ""), fileName(s(2), s(1))}},
		{[]string{fileName(s(2), s(1)), fileName(s(3), "")}, 1, []string{fileName(s(2), s(1))}}, // s2's parent is gone
		{[]string{fileName(s(1), ""), fileName(s(2), s(1))}, 0, nil},
	} {
		r := &remote{kind: KindFiles, files: map[string][]streamFile{}}
		for _, f := range tc.files {
			m := n.file.FindStringSubmatch(f)
			if m == nil {
				t.Fatalf("%s does not parse", f)
			}
			r.files[m[1]] = append(r.files[m[1]], streamFile{file: f, name: m[1], parent: m[3]})
		}
		if got := r.prunable(tc.keep); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%q keep %d: prune %q, want %q", tc.files, tc.keep, got, tc.want)
		}
	}
}

// TestDeps: node-side code links no build-side package.
func TestDeps(t *testing.T) {
	testenv.OnlyDeps(t, "github.com/mkimage/mkimage",
		"github.com/mkimage/mkimage/internal/node/",
		// The node's settings, as the cluster config bakes them.
		"github.com/mkimage/mkimage/internal/cluster/plan",
		"github.com/mkimage/mkimage/internal/atomicfile",
		// The target's commands are one shell string.
		"github.com/mkimage/mkimage/internal/shquote",
	)
}

// Node.Restore takes only a name of a scheduled subvolume's snapshots,
// before anything is fetched.
func TestNodeRestoreName(t *testing.T) {
	n := Node{Root: t.TempDir(), Config: &plan.Backup{Subvolume: "/", Dir: "/.snapshots", Containers: true,
		Target: &plan.BackupTarget{Host: "b@192.0.2.1", Dir: "/srv/b/n1"}}}
	for _, name := range []string{"home-20261203-033000", "rootfs-20261203-033000", "20261203-033000", ""} {
		if _, err := n.Restore(context.Background(), name, ""); err == nil || !strings.Contains(err.Error(), "is not a snapshot of / or /var/lib/lxc") {
			t.Errorf("%q: %v", name, err)
		}
	}
	if _, err := os.Stat(n.RestoredDir()); !os.IsNotExist(err) {
		t.Errorf("a refused restore made %s: %v", n.RestoredDir(), err)
	}
}
