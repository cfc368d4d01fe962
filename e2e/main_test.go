// Package e2e runs the mkimage binary as a user would and judges its
// outputs with the real tools: sfdisk, fsck.vfat, mtools, btrfs check, a
// kernel mount, and QEMU booting the images through U-Boot.
package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// mkimageBin is the binary under test, built once by TestMain.
var mkimageBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mkimage-e2e-bin-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	mkimageBin = filepath.Join(dir, "mkimage")
	cmd := exec.Command("go", "build", "-o", mkimageBin, "../cmd/mkimage")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building mkimage:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// run runs mkimage with args and returns stdout, stderr and the error.
func run(t *testing.T, env []string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(mkimageBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// mustRun runs mkimage and fails the test on error.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, err := run(t, nil, args...)
	if err != nil {
		t.Fatalf("mkimage %s: %v\nstderr:\n%s", strings.Join(args, " "), err, errs)
	}
	return out
}

// tool runs a host program and fails the test on error.
func tool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
