package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func entries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "f")
	if err := WriteFile(p, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("two"), 0o640); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	st, _ := os.Stat(p)
	if string(b) != "two" || st.Mode().Perm() != 0o640 {
		t.Errorf("content %q mode %v", b, st.Mode())
	}
	if got := entries(t, filepath.Join(dir, "sub")); len(got) != 1 {
		t.Errorf("left behind: %v", got)
	}
}

// An aborted or failed write leaves the old content and no temporary file.
func TestAbortKeepsOld(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Create(p, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("half"))
	f.Abort()
	f.Abort() // twice is fine
	if err := f.Commit(); err == nil {
		t.Error("Commit after Abort succeeded")
	}
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Errorf("content %q", b)
	}
	if got := entries(t, dir); strings.Join(got, " ") != "f" {
		t.Errorf("left behind: %v", got)
	}
	if _, err := Create(filepath.Join(dir, "missing", "f"), 0o644); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Create in a missing directory: %v", err)
	}
}

func TestIfChangedAndSymlink(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	WriteFile(p, []byte("x"), 0o644)
	st1, _ := os.Stat(p)
	if err := WriteFileIfChanged(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(p)
	if !os.SameFile(st1, st2) || st2.Mode().Perm() != 0o600 {
		t.Error("an unchanged file was rewritten, or its mode not set")
	}
	l := filepath.Join(dir, "link")
	for _, target := range []string{"/a", "/b"} {
		if err := Symlink(target, l); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.Readlink(l); got != target {
			t.Errorf("link -> %q, want %q", got, target)
		}
	}
}

func TestWriteNewFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "key")
	if err := WriteNewFile(p, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := WriteNewFile(p, []byte("second"), 0o644)
	if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), p+": file already exists; refusing to replace it") {
		t.Errorf("second write: %v", err)
	}
	b, _ := os.ReadFile(p)
	st, _ := os.Stat(p)
	if string(b) != "first" || st.Mode().Perm() != 0o600 {
		t.Errorf("content %q mode %v", b, st.Mode())
	}
	if got := entries(t, dir); len(got) != 1 {
		t.Errorf("left behind: %v", got)
	}
}

func TestReplaceDir(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "out")
	fill := func(content string) func(string) error {
		return func(tmp string) error {
			return WriteFile(filepath.Join(tmp, "marker"), []byte(content), 0o644)
		}
	}
	for _, content := range []string{"one", "two"} { // new, then replacing an earlier one
		if err := ReplaceDir(dir, "an output", "marker", fill(content)); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "marker")); string(b) != content {
			t.Errorf("marker holds %q, want %q", b, content)
		}
	}
	// A failing fill leaves the earlier output and nothing else.
	err := ReplaceDir(dir, "an output", "marker", func(tmp string) error {
		fill("three")(tmp)
		return errors.New("disk full")
	})
	if err == nil || err.Error() != "disk full" {
		t.Errorf("failing fill: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "marker")); string(b) != "two" {
		t.Errorf("after a failed fill the marker holds %q", b)
	}
	if got := entries(t, parent); len(got) != 1 {
		t.Errorf("left behind: %v", got)
	}
	// A directory that is not an earlier output is never replaced.
	other := filepath.Join(parent, "home")
	os.Mkdir(other, 0o755)
	if err := ReplaceDir(other, "an output", "marker", fill("x")); err == nil || !strings.Contains(err.Error(), "is not an output (no marker)") {
		t.Errorf("foreign directory: %v", err)
	}
}

// leftover leaves a temporary of path as a writer cut short by a power
// cut does: written, synced, never renamed, its process gone.
func leftover(t *testing.T, path, data string) string {
	t.Helper()
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte(data))
	f.Sync()
	f.Close() // never renamed: the power went
	return f.Name()
}

// A write after a power cut removes what the cut writer left, so a
// redone first-boot step leaves no file an uninterrupted one would not.
func TestLeftoverRemoved(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "ssh_host_ed25519_key")
	stale := []string{leftover(t, p, "half a key"), leftover(t, p, "")}
	other := leftover(t, filepath.Join(dir, "ssh_host_ecdsa_key"), "another path's")
	if got := entries(t, dir); len(got) != 3 {
		t.Fatalf("setup: %v", got)
	}
	if err := WriteFile(p, []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, s := range stale {
		if _, err := os.Lstat(s); err == nil {
			t.Errorf("%s left behind", filepath.Base(s))
		}
	}
	if _, err := os.Lstat(other); err != nil {
		t.Errorf("another path's temporary was removed: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "key" {
		t.Errorf("content %q", b)
	}

	// Policy's unchanged files are not rewritten, and not left with a
	// temporary either.
	s := leftover(t, p, "key")
	if err := WriteFileIfChanged(p, []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(s); err == nil {
		t.Errorf("%s left behind by an unchanged write", filepath.Base(s))
	}
}

// A temporary whose writer is still at work is not a leftover: a second
// writer of the same path leaves it, and both commit.
func TestConcurrentWritersKeepEachOther(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	a, err := Create(p, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	a.Write([]byte("a"))
	if err := WriteFile(p, []byte("b"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(a.Name()); err != nil {
		t.Fatalf("the running writer's temporary was removed: %v", err)
	}
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "a" {
		t.Errorf("content %q, want the last commit's", b)
	}
	if got := entries(t, dir); strings.Join(got, " ") != "f" {
		t.Errorf("left behind: %v", got)
	}
}

func TestExchange(t *testing.T) {
	for _, tc := range []struct {
		name         string
		hasA, hasB   bool
		wantA, wantB string // "" for missing
		wantErr      bool
	}{
		{name: "both", hasA: true, hasB: true, wantA: "b", wantB: "a"},
		{name: "no b", hasA: true, wantB: "a"},
		{name: "no a", hasB: true, wantErr: true, wantB: "b"},
		{name: "neither", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
			for p, has := range map[string]bool{a: tc.hasA, b: tc.hasB} {
				if !has {
					continue
				}
				if err := os.Mkdir(p, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(p, "name"), []byte(filepath.Base(p)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := Exchange(a, b)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Exchange: %v, want error %v", err, tc.wantErr)
			}
			for p, want := range map[string]string{a: tc.wantA, b: tc.wantB} {
				got, err := os.ReadFile(filepath.Join(p, "name"))
				if want == "" {
					if !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("%s: %q %v, want missing", filepath.Base(p), got, err)
					}
					continue
				}
				if string(got) != want {
					t.Errorf("%s holds %q (%v), want %q", filepath.Base(p), got, err, want)
				}
			}
		})
	}
}

// Writes into a tree another party controls never land outside it,
// whatever links it planted: a link on the way out is an error, a link
// at the name itself is replaced, not followed.
func TestWriteInTree(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(tree, outside string) error
		write func(r *os.Root) error
		fail  bool   // the write must fail
		want  string // else: the file's content in the tree
	}{
		{"directory link absolute", func(tree, outside string) error { return os.Symlink(outside, filepath.Join(tree, "etc")) },
			func(r *os.Root) error { return WriteFileIn(r, "etc/f", []byte("x"), 0o644) }, true, ""},
		{"directory link relative", func(tree, outside string) error { return os.Symlink("../outside", filepath.Join(tree, "etc")) },
			func(r *os.Root) error { return WriteFileIfChangedIn(r, "etc/f", []byte("x"), 0o644) }, true, ""},
		{"new file at a dangling link", func(tree, outside string) error {
			return os.Symlink(filepath.Join(outside, "new"), filepath.Join(tree, "f"))
		}, func(r *os.Root) error { return WriteNewFileIn(r, "f", []byte("x"), 0o600) }, true, ""},
		{"file link replaced", func(tree, outside string) error {
			return os.Symlink(filepath.Join(outside, "victim"), filepath.Join(tree, "f"))
		}, func(r *os.Root) error { return WriteFileIfChangedIn(r, "f", []byte("victim's"), 0o644) }, false, "victim's"},
		{"link inside the tree", func(tree, outside string) error {
			if err := os.Mkdir(filepath.Join(tree, "real"), 0o755); err != nil {
				return err
			}
			return os.Symlink("real", filepath.Join(tree, "etc"))
		}, func(r *os.Root) error { return WriteFileIn(r, "etc/f", []byte("in"), 0o644) }, false, "in"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tree, outside := filepath.Join(dir, "tree"), filepath.Join(dir, "outside")
			for _, d := range []string{tree, outside} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(outside, "victim"), []byte("victim's"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := tc.setup(tree, outside); err != nil {
				t.Fatal(err)
			}
			r, err := os.OpenRoot(tree)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			err = tc.write(r)
			if tc.fail != (err != nil) {
				t.Fatalf("err = %v, want failure %v", err, tc.fail)
			}
			if got := entries(t, outside); strings.Join(got, " ") != "victim" {
				t.Errorf("outside the tree: %v", got)
			}
			if b, _ := os.ReadFile(filepath.Join(outside, "victim")); string(b) != "victim's" {
				t.Errorf("outside file now %q", b)
			}
			if fi, err := os.Lstat(filepath.Join(outside, "victim")); err != nil || fi.Mode().Perm() != 0o644 {
				t.Errorf("outside file mode changed: %v %v", fi, err)
			}
			if !tc.fail {
				b, err := r.ReadFile("etc/f")
				if tc.name == "file link replaced" {
					var fi fs.FileInfo
					if fi, err = r.Lstat("f"); err == nil && !fi.Mode().IsRegular() {
						t.Errorf("f is still a %v", fi.Mode().Type())
					}
					b, err = r.ReadFile("f")
				}
				if err != nil || string(b) != tc.want {
					t.Errorf("in the tree: %q %v, want %q", b, err, tc.want)
				}
			}
		})
	}
}
