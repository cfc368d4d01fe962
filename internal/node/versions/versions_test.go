package versions

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/node/btrfsctl"
	"github.com/mkimage/mkimage/internal/testenv"
)

const id = "0123456789abcdef"

func TestPrepare(t *testing.T) {
	top := testenv.ScratchBtrfs(t)
	logf := func(format string, a ...any) { t.Logf(format, a...) }
	if _, err := Prepare(top, id, logf); err == nil || !strings.Contains(err.Error(), "not on this card") {
		t.Errorf("missing version: %v", err)
	}
	// roots/<id> as a build or a receive leaves it: read-only.
	if err := os.MkdirAll(filepath.Join(top, RootsDir), 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(top, "src")
	if err := btrfsctl.Create(src); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "marker"), []byte("v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := btrfsctl.Snapshot(src, filepath.Join(top, RootsDir, "1111111111111111"), false); err != nil {
		t.Fatal(err)
	}
	if _, err := Prepare(top, "1111111111111111", logf); err == nil || !strings.Contains(err.Error(), "writable") {
		t.Errorf("writable version root: %v", err)
	}
	if err := btrfsctl.Snapshot(src, filepath.Join(top, RootsDir, id), true); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // the second time finds everything made
		live, err := Prepare(top, id, logf)
		if err != nil {
			t.Fatal(err)
		}
		if live != "live/"+id {
			t.Errorf("live root %q", live)
		}
	}
	live := filepath.Join(top, LiveDir, id)
	info, err := btrfsctl.Stat(live)
	if err != nil || info.ReadOnly {
		t.Fatalf("live root: %+v, %v", info, err)
	}
	if b, _ := os.ReadFile(filepath.Join(live, "marker")); string(b) != "v1" {
		t.Errorf("live root does not hold the version's files: %q", b)
	}
	if err := os.WriteFile(filepath.Join(live, "marker"), []byte("changed on the node"), 0o644); err != nil {
		t.Errorf("live root not writable: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(top, RootsDir, id, "marker")); string(b) != "v1" {
		t.Errorf("writing the live root changed the version's root: %q", b)
	}
	for _, s := range State {
		if _, err := btrfsctl.Stat(filepath.Join(top, StateDir, s.Subvol)); err != nil {
			t.Errorf("state subvolume %s: %v", s.Subvol, err)
		}
	}
	// Something written to the live root survives: Prepare keeps it.
	if _, err := Prepare(top, id, logf); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(live, "marker")); string(b) != "changed on the node" {
		t.Errorf("a later boot remade the live root: %q", b)
	}
}

func TestMountRefusesBadID(t *testing.T) {
	for _, bad := range []string{"", "../../etc", "0123456789ABCDEF", "0000000000000000"} {
		err := Mount("/dev/null", "btrfs", "", bad, t.TempDir(), t.TempDir(), t.Logf)
		if err == nil || !strings.Contains(err.Error(), "mkimage.version") {
			t.Errorf("Mount with version %q: %v", bad, err)
		}
	}
}
