package apt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
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
	if !strings.Contains(log.String(), "apt: fetched busybox-static "+f.Version+" (0.") {
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
	if !strings.HasPrefix(log.String(), "apt: cached busybox-static") || !os.SameFile(st1, st2) {
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
	if got := sha(t, f.Path); got != f.SHA256 || !strings.HasPrefix(log.String(), "apt: fetched") {
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
	_, err = c.Fetch(context.Background(), "busybox-static:amd64")
	if err == nil || err.Error() != `package "busybox-static:amd64": this cache fetches arm64 packages only` {
		t.Errorf("other arch: %v", err)
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
