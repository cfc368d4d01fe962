package versions

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/node/btrfsctl"
	"github.com/mkimage/mkimage/internal/testenv"
)

// The child of TestRollback: Prepare killed at MKIMAGE_TEST_CUT.
func TestRollbackChild(t *testing.T) {
	step, top := os.Getenv("MKIMAGE_TEST_CUT"), os.Getenv("MKIMAGE_TEST_TOP")
	if step == "" || top == "" {
		t.Skip("the child of TestRollback")
	}
	cut = testenv.KillAt(step)
	_, err := Prepare(top, id, t.Logf)
	t.Fatal(err)
}

// A root rolls back to a snapshot of itself at the next boot, even when
// that boot is cut at any step; requests for anything but a read-only
// snapshot of the running root are refused, and one whose snapshot went
// is dropped.
func TestRollback(t *testing.T) {
	top := testenv.ScratchBtrfs(t)
	logs := &strings.Builder{}
	logf := func(format string, a ...any) { t.Logf(format, a...); logs.WriteString(format + "\n") }
	os.MkdirAll(filepath.Join(top, RootsDir), 0o755)
	src := filepath.Join(top, "src")
	if err := btrfsctl.Create(src); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(src, "etc"), 0o755)
	if err := btrfsctl.Snapshot(src, filepath.Join(top, RootsDir, id), true); err != nil {
		t.Fatal(err)
	}
	if _, err := Prepare(top, id, logf); err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(top, LiveDir, id)
	snaps := filepath.Join(top, StateDir, "snapshots")
	nodeState := filepath.Join(top, StateDir, "node")
	put := func(rel, data string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(live, rel), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	put("etc/a", "snapshotted")
	if err := btrfsctl.Snapshot(live, filepath.Join(snaps, "root-1"), true); err != nil {
		t.Fatal(err)
	}
	btrfsctl.Snapshot(live, filepath.Join(snaps, "writable"), false)
	btrfsctl.Snapshot(filepath.Join(top, RootsDir, id), filepath.Join(snaps, "of-the-version"), true)
	for snap, want := range map[string]string{
		"writable":       "is writable",
		"of-the-version": "is not of this version's root",
		"../node":        "want a snapshot under",
		"missing":        "no such file",
	} {
		if _, err := RequestRollback(live, snaps, nodeState, snap); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("rollback to %s: %v, want %q", snap, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(nodeState, RollbackFile)); !os.IsNotExist(err) {
		t.Fatalf("a refused request left %s: %v", RollbackFile, err)
	}

	check := func(when string) {
		t.Helper()
		if b, _ := os.ReadFile(filepath.Join(live, "etc/a")); string(b) != "snapshotted" {
			t.Errorf("%s: etc/a holds %q", when, b)
		}
		if _, err := os.Stat(filepath.Join(live, "etc/b")); !os.IsNotExist(err) {
			t.Errorf("%s: etc/b, made after the snapshot, is there: %v", when, err)
		}
		if _, err := os.Stat(filepath.Join(nodeState, RollbackFile)); !os.IsNotExist(err) {
			t.Errorf("%s: the request is still there: %v", when, err)
		}
		if info, err := btrfsctl.Stat(live); err != nil || info.ReadOnly {
			t.Errorf("%s: the live root: %+v, %v", when, info, err)
		}
	}
	for _, step := range []string{"", "snapshot", "exchange", "exchanged"} {
		put("etc/a", "changed later")
		put("etc/b", "made later")
		r, err := RequestRollback(live, snaps, nodeState, "root-1")
		if err != nil {
			t.Fatal(err)
		}
		if step != "" {
			testenv.RunKilled(t, "TestRollbackChild", "MKIMAGE_TEST_CUT="+step, "MKIMAGE_TEST_TOP="+top)
		}
		if _, err := Prepare(top, id, logf); err != nil {
			t.Fatal(err)
		}
		check("after a boot cut at " + step)
		if b, _ := os.ReadFile(filepath.Join(top, BeforeRollback(id, r), "etc/b")); string(b) != "made later" {
			t.Errorf("cut at %s: the root before is not kept as %s: %q", step, BeforeRollback(id, r), b)
		}
		if _, err := os.Stat(live + ".rollback"); !os.IsNotExist(err) {
			t.Errorf("cut at %s: %s.rollback is left: %v", step, live, err)
		}
	}
	// A request made in another version (an update came between) is
	// dropped at this version's boot.
	put("etc/b", "kept")
	if _, err := RequestRollback(live, snaps, nodeState, "root-1"); err != nil {
		t.Fatal(err)
	}
	other := "fedcba9876543210"
	if err := btrfsctl.Snapshot(filepath.Join(top, RootsDir, id), filepath.Join(top, RootsDir, other), true); err != nil {
		t.Fatal(err)
	}
	if _, err := Prepare(top, other, logf); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(top, LiveDir, other, VersionFile)); string(b) != other+"\n" || !strings.Contains(logs.String(), "rollback not done") {
		t.Errorf("a request of version %s booting %s: %s holds %q, log:\n%s", id, other, VersionFile, b, logs)
	}
	if _, err := os.Stat(filepath.Join(nodeState, RollbackFile)); !os.IsNotExist(err) {
		t.Errorf("the other version's request is still there: %v", err)
	}

	// A request whose snapshot went is dropped; the root stays.
	logs.Reset()
	put("etc/b", "kept")
	if _, err := RequestRollback(live, snaps, nodeState, "root-1"); err != nil {
		t.Fatal(err)
	}
	if err := btrfsctl.Delete(filepath.Join(snaps, "root-1")); err != nil {
		t.Fatal(err)
	}
	if _, err := Prepare(top, id, logf); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(live, "etc/b")); string(b) != "kept" || !strings.Contains(logs.String(), "rollback not done") {
		t.Errorf("a request for a deleted snapshot: etc/b %q, log:\n%s", b, logs)
	}
	if _, err := os.Stat(filepath.Join(nodeState, RollbackFile)); !os.IsNotExist(err) {
		t.Errorf("the dropped request is still there: %v", err)
	}
}
