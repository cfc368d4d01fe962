package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/build/bundle"
	"github.com/mkimage/mkimage/internal/build/sendstream/sendstreamtest"
	"github.com/mkimage/mkimage/internal/testenv"
	"github.com/mkimage/mkimage/internal/update"
)

// TestUpdateBundle: mkimage key generate and mkimage update as a user runs
// them: the bundle verifies with the key's .pub, btrfs-progs parses its
// root stream, two runs give the same bytes, and the errors a user meets
// first (a key in the way, no SOURCE_DATE_EPOCH, a readable key) are
// clear.
func TestUpdateBundle(t *testing.T) {
	testenv.Short(t)
	dir := t.TempDir()
	root := testRoot(t, dir)
	key := filepath.Join(dir, "signing")
	out := mustRun(t, "key", "generate", "-o", key, "--comment", "e2e")
	if !strings.Contains(out, "mkimage-ed25519-public ") {
		t.Errorf("key generate printed %q", out)
	}
	if _, errs, err := run(t, nil, "key", "generate", "-o", key); err == nil || !strings.Contains(errs, "exists; refusing to overwrite a key") {
		t.Errorf("second key generate: %v %s", err, errs)
	}

	args := func(out string) []string {
		return []string{"update", "--board", "odroid-c2", "--rootfs", root, "--key", key, "-o", out, "-q"}
	}
	if _, errs, err := run(t, []string{"SOURCE_DATE_EPOCH="}, args(filepath.Join(dir, "x"))...); err == nil || !strings.Contains(errs, "SOURCE_DATE_EPOCH is not set") {
		t.Errorf("update without SOURCE_DATE_EPOCH: %v %s", err, errs)
	}
	env := []string{"SOURCE_DATE_EPOCH=1700000000"}
	for _, name := range []string{"a", "b"} {
		if _, errs, err := run(t, env, args(filepath.Join(dir, name))...); err != nil {
			t.Fatalf("update: %v\n%s", err, errs)
		}
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := update.ParsePublicKeys(pub)
	if err != nil {
		t.Fatal(err)
	}
	m, err := bundle.Verify(filepath.Join(dir, "a"), keys)
	if err != nil {
		t.Fatal(err)
	}
	if m.Board != "odroid-c2" || m.Created != 1700000000 || !strings.Contains(m.Cmdline, "console=ttyAML0") {
		t.Errorf("manifest %+v", m)
	}
	var names []string
	for _, p := range m.Payloads {
		names = append(names, p.Name)
		a, _ := os.ReadFile(filepath.Join(dir, "a", p.Name))
		b, _ := os.ReadFile(filepath.Join(dir, "b", p.Name))
		if string(a) != string(b) {
			t.Errorf("%s differs between two runs", p.Name)
		}
	}
	if want := []string{"root.full", "Image", "initrd.img", "board.dtb"}; !slices.Equal(names, want) {
		t.Errorf("payloads %v, want %v", names, want)
	}
	stream, _ := os.ReadFile(filepath.Join(dir, "a", "root.full"))
	if len(sendstreamtest.Dump(t, stream)) == 0 {
		t.Error("btrfs receive --dump lists nothing in root.full")
	}

	os.Chmod(key, 0o644)
	if _, errs, err := run(t, env, args(filepath.Join(dir, "c"))...); err == nil || !strings.Contains(errs, "run chmod 600 "+key) {
		t.Errorf("update with a key others can read: %v %s", err, errs)
	}
}
