package cachedir

import (
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestRoot(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/x/cache")
	if Root() != "/x/cache/mkimage" || Dir("apt") != "/x/cache/mkimage/apt" {
		t.Errorf("Root %s, Dir %s", Root(), Dir("apt"))
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "/home/u")
	if Root() != "/home/u/.cache/mkimage" {
		t.Errorf("Root %s", Root())
	}
}

// node is one path of a fake cache tree.
type node struct {
	path string        // relative to the root; a trailing "/" makes a directory
	size int           // bytes of random data in a file
	age  time.Duration // its mtime is this long ago
	link string        // a hard link to this earlier path instead of a new file
}

const kib = 1 << 10

// makeTree writes nodes under a new root and sets their times last,
// deepest first, since adding a child changes a directory's mtime.
func makeTree(t *testing.T, nodes []node) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "cache")
	for _, n := range nodes {
		p := filepath.Join(root, n.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case strings.HasSuffix(n.path, "/"):
			err = os.MkdirAll(p, 0o755)
		case n.link != "":
			err = os.Link(filepath.Join(root, n.link), p)
		default:
			data := make([]byte, n.size)
			rand.Read(data) // incompressible, so no filesystem shrinks it
			err = os.WriteFile(p, data, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	byDepth := slices.Clone(nodes)
	sort.SliceStable(byDepth, func(i, j int) bool {
		return strings.Count(strings.TrimSuffix(byDepth[i].path, "/"), "/") > strings.Count(strings.TrimSuffix(byDepth[j].path, "/"), "/")
	})
	now := time.Now()
	for _, n := range byDepth {
		mt := now.Add(-n.age)
		if err := os.Chtimes(filepath.Join(root, n.path), mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// blocks is the disk usage of the paths under root, each inode once.
func blocks(t *testing.T, root string, paths ...string) int64 {
	t.Helper()
	seen := map[uint64]bool{}
	var n int64
	for _, p := range paths {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(root, p), &st); err != nil {
			t.Fatal(err)
		}
		if !seen[st.Ino] {
			seen[st.Ino] = true
			n += st.Blocks * 512
		}
	}
	return n
}

// kindOf returns the usage of the named kind.
func kindOf(t *testing.T, u *Usage, name string) KindUsage {
	t.Helper()
	for _, k := range u.Kinds {
		if k.Name == name {
			return k
		}
	}
	t.Fatalf("no kind %s", name)
	return KindUsage{}
}

func paths(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Path)
	}
	return out
}

func TestList(t *testing.T) {
	day := 24 * time.Hour
	for _, tt := range []struct {
		name  string
		nodes []node
		// want maps a kind to its entries and, per entry, the paths whose
		// blocks make its size.
		want    map[string]map[string][]string
		age     map[string]time.Duration // entry → expected age of its last use
		unknown []string
		gone    []string // paths List removes (prune leftovers)
	}{
		{
			name: "no cache yet",
			want: map[string]map[string][]string{"apt/debs": {}, "kernel/src": {}},
		},
		{
			name: "an entry per file and per directory, lists whole",
			nodes: []node{
				{path: "apt/debs/a_1_arm64.deb", size: 64 * kib, age: 3 * day},
				{path: "apt/debs/b_1_arm64.deb", size: 8 * kib, age: 40 * day},
				{path: "apt/lists/x_Packages.lz4", size: 16 * kib, age: 2 * day},
				{path: "apt/lists/", age: time.Hour},
				{path: "apt/cache/archives/partial/", age: 5 * day},
				{path: "apt/.lock", age: day},
				{path: "kernel/src/abc/linux/Makefile", size: 4 * kib},
				{path: "kernel/src/abc/linux/", age: 900 * day},
				{path: "kernel/src/abc/", age: 10 * day},
				{path: "initramfs/initramfs-k.cpio.xz", size: 32 * kib, age: time.Minute},
			},
			want: map[string]map[string][]string{
				"apt/debs":   {"apt/debs/a_1_arm64.deb": {"apt/debs/a_1_arm64.deb"}, "apt/debs/b_1_arm64.deb": {"apt/debs/b_1_arm64.deb"}},
				"apt/lists":  {"apt/lists": {"apt/lists", "apt/lists/x_Packages.lz4"}, "apt/cache": {"apt/cache", "apt/cache/archives", "apt/cache/archives/partial"}},
				"kernel/src": {"kernel/src/abc": {"kernel/src/abc", "kernel/src/abc/linux", "kernel/src/abc/linux/Makefile"}},
				"initramfs":  {"initramfs/initramfs-k.cpio.xz": {"initramfs/initramfs-k.cpio.xz"}},
				"kernels":    {},
			},
			// A directory entry's last use is its own mtime, not its
			// contents' (an unpacked tree keeps its archive's times).
			age: map[string]time.Duration{"apt/debs/b_1_arm64.deb": 40 * day, "apt/lists": time.Hour, "kernel/src/abc": 10 * day},
		},
		{
			name: "hard links counted once",
			nodes: []node{
				{path: "test-debs/a/lib/x.ko", size: 128 * kib},
				{path: "test-debs/b/lib/x.ko", link: "test-debs/a/lib/x.ko"},
				{path: "test-debs/b/lib/y.ko", size: 4 * kib},
			},
			want: map[string]map[string][]string{"test-debs": {
				"test-debs/a": {"test-debs/a", "test-debs/a/lib", "test-debs/a/lib/x.ko"},
				"test-debs/b": {"test-debs/b", "test-debs/b/lib", "test-debs/b/lib/y.ko"},
			}},
		},
		{
			name: "lock files, leftovers of an interrupted prune, and what no kind claims",
			nodes: []node{
				{path: "kernel/build/h1/vmlinux.o", size: 4 * kib},
				{path: "kernel/build/h1.lock"},
				{path: "kernel/build/h2.lock"},
				{path: "kernel/.kconfig-123/o/.config", size: 4 * kib},
				{path: "kernel/out/.prune-00ff/Image", size: 4 * kib},
				{path: "apt/.prune-0001/lists/x", size: 4 * kib},
				{path: ".prune-77/bin/sh", size: 4 * kib},
				{path: "test-debian-root/bin/sh", size: 4 * kib},
				{path: "downloads/x.iso", size: 4 * kib},
				{path: "apt/notes.txt", size: 1},
			},
			want: map[string]map[string][]string{
				"kernel/build":     {"kernel/build/h1": {"kernel/build/h1", "kernel/build/h1/vmlinux.o"}},
				"kernel/kconfig":   {"kernel/.kconfig-123": {"kernel/.kconfig-123", "kernel/.kconfig-123/o", "kernel/.kconfig-123/o/.config"}},
				"kernel/out":       {},
				"test-debian-root": {"test-debian-root": {"test-debian-root", "test-debian-root/bin", "test-debian-root/bin/sh"}},
			},
			unknown: []string{"apt/notes.txt", "downloads"},
			gone:    []string{"kernel/out/.prune-00ff", "apt/.prune-0001", ".prune-77"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := makeTree(t, tt.nodes)
			// Sizes before List, which removes leftovers.
			wantSize := map[string]int64{}
			for _, entries := range tt.want {
				for e, ps := range entries {
					wantSize[e] = blocks(t, root, ps...)
				}
			}
			u, err := List(root)
			if err != nil {
				t.Fatal(err)
			}
			if u.Root != root || len(u.Kinds) != len(Kinds) {
				t.Errorf("root %s, %d kinds; want %s, %d", u.Root, len(u.Kinds), root, len(Kinds))
			}
			var total int64
			var count int
			for kind, entries := range tt.want {
				ku := kindOf(t, u, kind)
				var want []string
				for e := range entries {
					want = append(want, e)
				}
				sort.Strings(want)
				got := paths(ku.Entries)
				sort.Strings(got)
				if !slices.Equal(got, want) {
					t.Errorf("%s: entries %q, want %q", kind, got, want)
					continue
				}
				var sum int64
				for _, e := range ku.Entries {
					if e.Size != wantSize[e.Path] {
						t.Errorf("%s: size %d, want %d", e.Path, e.Size, wantSize[e.Path])
					}
					if age, ok := tt.age[e.Path]; ok {
						if d := time.Since(e.LastUse) - age; d < -time.Minute || d > time.Minute {
							t.Errorf("%s: last use %s ago, want %s", e.Path, time.Since(e.LastUse).Round(time.Second), age)
						}
					}
					if e.LastUse.Before(ku.Oldest) || e.LastUse.After(ku.Newest) {
						t.Errorf("%s: last use %s outside the kind's %s..%s", e.Path, e.LastUse, ku.Oldest, ku.Newest)
					}
					sum += e.Size
				}
				if ku.Size != sum {
					t.Errorf("%s: size %d, entries sum to %d", kind, ku.Size, sum)
				}
				total += sum
				count += len(ku.Entries)
			}
			if u.Size != total || u.Entries != count {
				t.Errorf("total %d bytes in %d entries, want %d in %d", u.Size, u.Entries, total, count)
			}
			if !slices.Equal(u.Unknown, tt.unknown) {
				t.Errorf("unknown %q, want %q", u.Unknown, tt.unknown)
			}
			for _, p := range tt.gone {
				if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
					t.Errorf("leftover %s is still there", p)
				}
			}
		})
	}
}

// TestSparse: the size is what the disk holds, not the files' lengths.
func TestSparse(t *testing.T) {
	root := makeTree(t, []node{{path: "kernels/k/"}})
	f, err := os.Create(filepath.Join(root, "kernels/k/Image"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("x"), 1<<30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	u, err := List(root)
	if err != nil {
		t.Fatal(err)
	}
	if s := kindOf(t, u, "kernels").Size; s > 1<<20 {
		t.Errorf("a 1 GiB sparse file with one byte counts %d bytes", s)
	}
}

func TestListNotADirectory(t *testing.T) {
	f := filepath.Join(t.TempDir(), "f")
	os.WriteFile(f, nil, 0o644)
	if _, err := List(f); err == nil || !strings.Contains(err.Error(), f) {
		t.Errorf("List of a file: %v", err)
	}
}

// hold takes the flock a writer would hold on the lock file at rel.
func hold(t *testing.T, root, rel string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(root, rel), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
}

func TestPrune(t *testing.T) {
	day := 24 * time.Hour
	tree := []node{
		{path: "kernel/src/old/linux/Makefile", size: 64 * kib},
		{path: "kernel/src/old/", age: 40 * day},
		{path: "kernel/src/new/linux/Makefile", size: 4 * kib},
		{path: "kernel/src/new/", age: time.Hour},
		{path: "kernel/build/b1/x.o", size: 4 * kib},
		{path: "kernel/build/b1/", age: 50 * day},
		{path: "kernel/build/b1.lock"},
		{path: "apt/debs/a_1_arm64.deb", size: 8 * kib, age: 31 * day},
		{path: "apt/debs/b_1_arm64.deb", size: 8 * kib, age: 29 * day},
		{path: "apt/lists/p", size: 4 * kib},
		{path: "apt/lists/", age: 45 * day},
		{path: "apt/.lock"},
		{path: "test-debian-root/etc/passwd", size: 4 * kib},
		{path: "test-debian-root/", age: 60 * day},
		{path: "initramfs/.prune-1234/initramfs-x.cpio.xz", size: 4 * kib, age: 90 * day},
		{path: "mine/keep", size: 4 * kib, age: 400 * day},
	}
	for _, tt := range []struct {
		name      string
		olderThan time.Duration
		dryRun    bool
		held      []string // lock files a running build holds
		removed   []string
		inUse     []string
		err       string
	}{
		{
			name: "removes what was not used in 30 days, each entry whole", olderThan: 30 * day,
			removed: []string{"apt/debs/a_1_arm64.deb", "apt/lists", "kernel/src/old", "kernel/build/b1", "test-debian-root"},
		},
		{
			name: "dry run", olderThan: 30 * day, dryRun: true,
			removed: []string{"apt/debs/a_1_arm64.deb", "apt/lists", "kernel/src/old", "kernel/build/b1", "test-debian-root"},
		},
		{
			name: "a held lock keeps its entry", olderThan: 30 * day, held: []string{"kernel/build/b1.lock", "apt/.lock"},
			removed: []string{"apt/debs/a_1_arm64.deb", "kernel/src/old", "test-debian-root"},
			inUse:   []string{"apt/lists", "kernel/build/b1"},
		},
		{
			name: "a held lock in a dry run", olderThan: 30 * day, dryRun: true, held: []string{"kernel/build/b1.lock"},
			removed: []string{"apt/debs/a_1_arm64.deb", "apt/lists", "kernel/src/old", "test-debian-root"},
			inUse:   []string{"kernel/build/b1"},
		},
		{
			name: "a longer cutoff", olderThan: 55 * day,
			removed: []string{"test-debian-root"},
		},
		{name: "under the minimum", olderThan: 2 * time.Hour, err: "under a day"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := makeTree(t, tree)
			for _, l := range tt.held {
				hold(t, root, l)
			}
			before, err := List(root)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Prune(root, tt.olderThan, tt.dryRun)
			if tt.err != "" {
				if !errors.Is(err, ErrTooRecent) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want one saying %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			var freed int64
			for _, p := range res.Removed {
				got = append(got, p.Path)
				freed += p.Size
			}
			sort.Strings(got)
			want := slices.Sorted(slices.Values(tt.removed))
			if !slices.Equal(got, want) {
				t.Errorf("removed %q, want %q", got, want)
			}
			if !slices.Equal(res.InUse, tt.inUse) {
				t.Errorf("in use %q, want %q", res.InUse, tt.inUse)
			}
			if res.Freed != freed || freed == 0 {
				t.Errorf("freed %d, entries sum to %d", res.Freed, freed)
			}
			if res.Kept+len(res.Removed)+len(res.InUse) != before.Entries {
				t.Errorf("kept %d + removed %d + in use %d != %d entries", res.Kept, len(res.Removed), len(res.InUse), before.Entries)
			}
			after, err := List(root)
			if err != nil {
				t.Fatal(err)
			}
			wantLeft := before.Entries - len(res.Removed)
			if tt.dryRun {
				wantLeft = before.Entries
			}
			if after.Entries != wantLeft {
				t.Errorf("%d entries after, want %d", after.Entries, wantLeft)
			}
			for _, p := range tt.removed {
				_, err := os.Lstat(filepath.Join(root, p))
				if tt.dryRun != (err == nil) {
					t.Errorf("%s: dry run %v, exists %v", p, tt.dryRun, err == nil)
				}
			}
			// Nothing half-removed stays, locks stay, and what is not
			// mkimage's is left alone.
			filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
				if strings.HasPrefix(d.Name(), leftoverPrefix) {
					t.Errorf("leftover %s", p)
				}
				return nil
			})
			for _, p := range []string{"kernel/build/b1.lock", "apt/.lock", "mine/keep", "kernel/src/new/linux/Makefile", "apt/debs/b_1_arm64.deb"} {
				if _, err := os.Lstat(filepath.Join(root, p)); err != nil {
					t.Errorf("%s went: %v", p, err)
				}
			}
		})
	}
}

// TestPruneUsedMeanwhile: an entry a build took after the listing stays.
func TestPruneUsedMeanwhile(t *testing.T) {
	root := makeTree(t, []node{{path: "kernels/k/Image", size: 4 * kib}, {path: "kernels/k/", age: 40 * 24 * time.Hour}})
	cutoff := time.Now().Add(-30 * 24 * time.Hour)
	if err := Touch(filepath.Join(root, "kernels/k")); err != nil {
		t.Fatal(err)
	}
	gone, inUse, err := pruneEntry(root, Kinds[slices.IndexFunc(Kinds, func(k Kind) bool { return k.Name == "kernels" })], "kernels/k", cutoff, false)
	if gone || inUse || err != nil {
		t.Errorf("gone %v, in use %v, err %v; want it kept", gone, inUse, err)
	}
	if _, err := os.Stat(filepath.Join(root, "kernels/k/Image")); err != nil {
		t.Error(err)
	}
}

func TestTouch(t *testing.T) {
	root := makeTree(t, []node{{path: "f", size: 1, age: 1000 * time.Hour}, {path: "d/", age: 1000 * time.Hour}})
	for _, p := range []string{"f", "d"} {
		if err := Touch(filepath.Join(root, p)); err != nil {
			t.Fatal(err)
		}
		st, _ := os.Stat(filepath.Join(root, p))
		if time.Since(st.ModTime()) > time.Minute {
			t.Errorf("%s: mtime %s after Touch", p, st.ModTime())
		}
	}
	if err := Touch(filepath.Join(root, "missing")); err == nil {
		t.Error("Touch of a missing path: no error")
	}
}

func TestParseAge(t *testing.T) {
	day := 24 * time.Hour
	for _, tt := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30d", 30 * day, true}, {"1.5d", 36 * time.Hour, true}, {"36h", 36 * time.Hour, true},
		{"1d12h", 36 * time.Hour, true}, {"90m", 90 * time.Minute, true}, {" 7d ", 7 * day, true},
		{"0", 0, true}, {"", 0, false}, {"d", 0, false}, {"30", 0, false}, {"3w", 0, false},
		{"-1d", 0, false}, {"1d-1h", 0, false}, {"NaNd", 0, false}, {"1d2d", 0, false},
		{"99999999d", 0, false}, {"month", 0, false},
	} {
		got, err := ParseAge(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseAge(%q) = %s, %v; want %s ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), "30d") || !strings.Contains(err.Error(), tt.in)) {
			t.Errorf("ParseAge(%q): error %q names neither the input nor an example", tt.in, err)
		}
	}
}

// TestREADME: the README's Caches section names every kind.
func TestREADME(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n## Caches\n")
	if !ok {
		t.Fatal("README.md has no Caches section")
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	for _, k := range Kinds {
		if !strings.Contains(sec, "`"+k.Name+"`") {
			t.Errorf("README.md's Caches section does not name kind %s", k.Name)
		}
	}
}
