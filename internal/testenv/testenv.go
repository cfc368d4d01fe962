// Package testenv lets tests ask for host tools. Outside CI a missing tool
// skips the test; under CI (CI set) it fails it, so a green CI run always
// means the real tools judged the output.
package testenv

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/cachedir"
)

// NeedTools skips (or, under CI, fails) t unless every named program is
// on PATH.
func NeedTools(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			Missing(t, "program "+n+" not found on PATH")
		}
	}
}

// NeedFile skips (or, under CI, fails) t unless path exists.
func NeedFile(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Missing(t, path+" not found")
	}
}

// NeedRoot skips t unless it runs as root (never fails: root is optional).
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// Missing skips t outside CI and fails it under CI.
func Missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI: %s (.ci/run must install it)", why)
	}
	t.Skip(why)
}

// Short skips long end-to-end tests under go test -short.
func Short(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test skipped with -short")
	}
}

// Run runs a host program and fails t with its output when it fails; it
// returns what the program printed (stdout and stderr).
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// CacheFiles returns the files in mkimage's cache (~/.cache/mkimage)
// matching glob (relative to the cache, filepath.Glob syntax), for tests
// and fuzz seeds that use real inputs when a build has fetched them. It
// returns nil when there are none.
func CacheFiles(glob string) []string {
	m, _ := filepath.Glob(filepath.Join(cachedir.Root(), glob))
	return m
}

// Bounded runs fn and fails t when it allocates more than maxAlloc bytes
// in total (runtime.MemStats.TotalAlloc, which counts garbage too, so a
// huge buffer made and dropped still shows) or takes longer than maxTime.
// It is how tests hold a parser to bounded memory and time on hostile
// input; run such tests without t.Parallel so others do not add to the
// count.
func Bounded(t testing.TB, maxAlloc uint64, maxTime time.Duration, fn func()) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	fn()
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > maxAlloc {
		t.Errorf("allocated %d bytes, want at most %d", n, maxAlloc)
	}
	if took > maxTime {
		t.Errorf("took %v, want at most %v", took, maxTime)
	}
}

// Head returns the first n bytes of the file at path (fewer if it is
// shorter), for seeds cut from big real files.
func Head(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, n))
}

// OnlyDeps fails t for each package the package in the current directory
// links (`go list -deps`, standard library left out) that lies under
// scope ("" for all) and is not allowed: an allowed entry ending in "/"
// admits everything below it, any other exactly itself. It holds a
// side's code to what that side may link.
func OnlyDeps(t testing.TB, scope string, allowed ...string) {
	t.Helper()
	NeedTools(t, "go")
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range strings.Fields(string(out)) {
		if !strings.HasPrefix(p, scope) {
			continue
		}
		ok := false
		for _, a := range allowed {
			if p == a || strings.HasSuffix(a, "/") && strings.HasPrefix(p, a) {
				ok = true
			}
		}
		if !ok {
			t.Errorf("%s is linked, and it is not one of %q", p, allowed)
		}
	}
}
