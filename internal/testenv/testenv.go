// Package testenv lets tests ask for host tools. Outside CI a missing tool
// skips the test; under CI (CI set) it fails it, so a green CI run always
// means the real tools judged the output.
package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
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
