package apt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/cachedir"

	"github.com/mkimage/mkimage/internal/build/deb"
	"github.com/mkimage/mkimage/internal/testenv"
)

// testCache is a private cache in a temporary directory. Package lists
// from the default cache are copied in when present, which saves the
// ~20 MB download; otherwise apt-get update runs for real.
func testCache(t *testing.T, log io.Writer) *Cache {
	t.Helper()
	testenv.NeedTools(t, "apt-get", "apt-cache")
	c := &Cache{Dir: t.TempDir(), Arch: "arm64", Log: log}
	if def := cachedir.Dir("apt"); def != "" {
		ms, _ := filepath.Glob(filepath.Join(def, "lists", "*_*"))
		if err := os.MkdirAll(filepath.Join(c.Dir, "lists"), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			b, err := os.ReadFile(m)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(c.Dir, "lists", filepath.Base(m)), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return c
}

func sha(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestFetchBusybox(t *testing.T) {
	var log bytes.Buffer
	c := testCache(t, &log)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	fs, err := c.Fetch(ctx, "busybox-static")
	if err != nil {
		t.Fatal(err)
	}
	f := fs[0]
	t.Logf("%+v\n%s", f, log.String())
	if f.Name != "busybox-static" || f.Arch != "arm64" || filepath.Dir(f.Path) != filepath.Join(c.Dir, "debs") {
		t.Errorf("fetched %+v", f)
	}
	if got := sha(t, f.Path); got != f.SHA256 || len(got) != 64 {
		t.Errorf("sha256 %s, reported %s", got, f.SHA256)
	}
	if st, _ := os.Stat(f.Path); st.Size() != f.Size {
		t.Errorf("size %d, reported %d", st.Size(), f.Size)
	}
	pkg, err := deb.Open(f.Path)
	if err != nil {
		t.Fatal(err)
	}
	if ctl := pkg.Control(); ctl.Package != "busybox-static" || ctl.Version != f.Version || ctl.Architecture != "arm64" {
		t.Errorf("control %+v", ctl)
	}
	// One "fetched" line; a slow download adds progress lines before it.
	if !strings.Contains(log.String(), "apt: fetched busybox-static "+f.Version+" (0.") || strings.Count(log.String(), "apt: fetched") != 1 {
		t.Errorf("log %q", log.String())
	}
	// Temporary download directories are gone.
	if ents, _ := os.ReadDir(filepath.Join(c.Dir, "debs")); len(ents) != 1 {
		t.Errorf("debs holds %d entries", len(ents))
	}

	// Again: served from the cache, the file untouched.
	log.Reset()
	st1, _ := os.Stat(f.Path)
	if _, err := c.Fetch(ctx, "busybox-static"); err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(f.Path)
	if log.String() != "apt: cached busybox-static "+f.Version+" ("+mb(f.Size)+")\n" || !os.SameFile(st1, st2) {
		t.Errorf("second fetch did not reuse the file: %q", log.String())
	}

	// A damaged cached file is fetched again.
	if err := os.WriteFile(f.Path, []byte("damaged"), 0o644); err != nil {
		t.Fatal(err)
	}
	log.Reset()
	if _, err := c.Fetch(ctx, "busybox-static"); err != nil {
		t.Fatal(err)
	}
	if got := sha(t, f.Path); got != f.SHA256 || !strings.Contains(log.String(), "apt: fetched") {
		t.Errorf("damaged file not replaced: %s, log %q", got, log.String())
	}
}

func TestFetchUnknown(t *testing.T) {
	c := testCache(t, nil)
	_, err := c.Fetch(context.Background(), "no-such-package-mkimage")
	if err == nil || !strings.Contains(err.Error(), `package "no-such-package-mkimage" not found in the arm64 lists`) {
		t.Errorf("err = %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(c.Dir, "debs")); len(ents) != 0 {
		t.Errorf("debs holds %d entries after a failed fetch", len(ents))
	}
	// Among known names, the unknown ones are named, and nothing is
	// fetched.
	_, err = c.Fetch(context.Background(), "busybox-static", "no-such-a", "mawk=0.0-0", "no-such-b")
	if err == nil || !strings.Contains(err.Error(), `package "no-such-a", "mawk=0.0-0", "no-such-b" not found in the arm64 lists`) {
		t.Errorf("some unknown: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(c.Dir, "debs")); len(ents) != 0 {
		t.Errorf("debs holds %d entries after a failed fetch", len(ents))
	}
	_, err = c.Fetch(context.Background(), "busybox-static:amd64")
	if err == nil || err.Error() != `package "busybox-static:amd64": this cache fetches arm64 packages only` {
		t.Errorf("other arch: %v", err)
	}
}

// countingTools puts apt-get and apt-cache wrappers first on PATH that
// append their name to a log, and returns a function counting the runs
// of each.
func countingTools(t *testing.T) func() map[string]int {
	dir := t.TempDir()
	log := filepath.Join(dir, "runs")
	for _, tool := range []string{"apt-get", "apt-cache"} {
		real, err := exec.LookPath(tool)
		if err != nil {
			t.Skip(err)
		}
		script := "#!/bin/sh\necho " + tool + " >>" + log + "\nexec " + real + " \"$@\"\n"
		if err := os.WriteFile(filepath.Join(dir, tool), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	return func() map[string]int {
		b, _ := os.ReadFile(log)
		n := map[string]int{}
		for _, l := range strings.Fields(string(b)) {
			n[l]++
		}
		os.Remove(log)
		return n
	}
}

// TestFetchMany: many packages take one apt-cache and one apt-get run,
// all arrive checked, progress is plain lines in a log, and a second
// fetch runs apt-cache only.
func TestFetchMany(t *testing.T) {
	testenv.Short(t)
	var log bytes.Buffer
	c := testCache(t, &log)
	if err := c.Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	runs := countingTools(t)
	names := []string{"mawk", "busybox-static", "libc6", "base-files", "ca-certificates", "hostname"}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	fs, err := c.Fetch(ctx, names...)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(log.String())
	if n := runs(); n["apt-cache"] != 1 || n["apt-get"] != 1 {
		t.Errorf("apt runs %v, want one apt-cache and one apt-get", n)
	}
	for i, f := range fs {
		if f.Name != names[i] || sha(t, f.Path) != f.SHA256 {
			t.Errorf("%s: fetched %+v", names[i], f)
		}
	}
	if !strings.Contains(log.String(), fmt.Sprintf("apt: fetched %d packages (", len(names))) {
		t.Errorf("log %q", log.String())
	}
	if ents, _ := os.ReadDir(filepath.Join(c.Dir, "debs")); len(ents) != len(names) {
		t.Errorf("debs holds %d entries, want %d", len(ents), len(names))
	}

	log.Reset()
	if _, err := c.Fetch(ctx, names...); err != nil {
		t.Fatal(err)
	}
	if n := runs(); n["apt-cache"] != 1 || n["apt-get"] != 0 {
		t.Errorf("cached: apt runs %v, want one apt-cache", n)
	}
	if want := fmt.Sprintf("apt: %d packages cached (", len(names)); !strings.HasPrefix(log.String(), want) {
		t.Errorf("cached: log %q, want %q...", log.String(), want)
	}
}

// TestFetchEntriesBadSum: a download whose sha256 is not the entry's is
// an error naming the package, and it does not enter the cache.
func TestFetchEntriesBadSum(t *testing.T) {
	testenv.Short(t)
	c := testCache(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	fs, err := c.Fetch(ctx, "hostname")
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(fs[0].Path)
	e := fs[0].Entry
	e.SHA256 = strings.Repeat("0", 64)
	_, err = c.FetchEntries(ctx, []Entry{e})
	if err == nil || !strings.Contains(err.Error(), "package hostname "+e.Version+": downloaded file has sha256 ") {
		t.Errorf("err = %v", err)
	}
	if _, serr := os.Stat(fs[0].Path); serr == nil {
		t.Error("a file with the wrong sha256 entered the cache")
	}
}

func TestKernelPackage(t *testing.T) {
	// The default cache: the kernel .deb is large, and reusing it is
	// the point.
	testenv.NeedTools(t, "apt-get", "apt-cache")
	var log bytes.Buffer
	c, err := New(&log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	f, err := c.KernelPackage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v\n%s", f, log.String())
	if !strings.HasPrefix(f.Name, "linux-image-6.") || !strings.HasSuffix(f.Name, "-arm64") || f.Size < 10e6 {
		t.Errorf("kernel package %+v", f)
	}
	if got := sha(t, f.Path); got != f.SHA256 {
		t.Errorf("sha256 %s, index %s", got, f.SHA256)
	}
}

func TestUpdateFailsWithoutLists(t *testing.T) {
	testenv.NeedTools(t, "apt-get")
	// No lists and a source list that names nothing: an error naming
	// the cache, not a silent empty index.
	c := &Cache{Dir: t.TempDir(), Arch: "arm64"}
	empty := filepath.Join(t.TempDir(), "sources.list")
	os.WriteFile(empty, nil, 0o644)
	t.Setenv("APT_CONFIG", writeConf(t, "Dir::Etc::SourceList \""+empty+"\";\nDir::Etc::SourceParts \"/nonexistent\";\n"))
	err := c.Update(context.Background())
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "apt update of "+c.Dir) {
		t.Errorf("err = %v", err)
	}
}

func writeConf(t *testing.T, s string) string {
	p := filepath.Join(t.TempDir(), "apt.conf")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
