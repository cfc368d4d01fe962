package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/cachedir"
)

// capture runs mkimage with args and returns its exit status, stdout and
// stderr.
func capture(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	dir := t.TempDir()
	outF, _ := os.Create(filepath.Join(dir, "stdout"))
	errF, _ := os.Create(filepath.Join(dir, "stderr"))
	oldOut, oldErr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = outF, errF
	rc := run(args)
	os.Stdout, os.Stderr = oldOut, oldErr
	outF.Close()
	errF.Close()
	out, _ := os.ReadFile(outF.Name())
	errOut, _ := os.ReadFile(errF.Name())
	return rc, string(out), string(errOut)
}

// fakeCache makes a cache with a kernel unpack last used 40 days ago and
// an initramfs used now.
func fakeCache(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, f := range []string{"kernels/old-2/Image", "initramfs/initramfs-new.cpio.xz"} {
		os.MkdirAll(filepath.Join(root, filepath.Dir(f)), 0o755)
		if err := os.WriteFile(filepath.Join(root, f), make([]byte, 8192), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-40 * 24 * time.Hour)
	if err := os.Chtimes(filepath.Join(root, "kernels/old-2"), old, old); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestCacheCommand(t *testing.T) {
	for _, tt := range []struct {
		name    string
		args    []string // after "mkimage cache", with --cache-dir added
		rc      int
		out     []string // in stdout
		errOut  []string // in stderr
		oldGone bool     // the 40-day-old kernel unpack is gone afterwards
	}{
		{name: "table", rc: 0, out: []string{"KIND", "kernels ", "initramfs ", "40d ago", "total ", "2 "}},
		{name: "json", args: []string{"--json"}, rc: 0, out: []string{`"kind": "kernels"`, `"path": "kernels/old-2"`}},
		{name: "dry run", args: []string{"prune", "--dry-run"}, rc: 0,
			out: []string{"would remove kernels/old-2 (", "last used 40d ago", "would free ", "in 1 entry of", "kept 1 entry used in the last 30d"}},
		{name: "prune", args: []string{"prune"}, rc: 0, out: []string{"removed kernels/old-2 (", "freed "}, oldGone: true},
		{name: "prune in days and hours", args: []string{"prune", "--older-than", "39d12h"}, rc: 0, out: []string{"removed kernels/old-2"}, oldGone: true},
		{name: "nothing that old", args: []string{"prune", "--older-than", "41d"}, rc: 0, out: []string{"freed 0 B in 0 entries", "kept 2 entries"}},
		{name: "bad age", args: []string{"prune", "--older-than", "3w"}, rc: 2, errOut: []string{`"3w"`, "30d"}},
		{name: "age under a day", args: []string{"prune", "--older-than", "2h"}, rc: 2, errOut: []string{"--older-than: age 2h", "under a day"}},
		{name: "stray argument", args: []string{"prnue"}, rc: 2, errOut: []string{`"prnue"`, "mkimage cache prune"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := fakeCache(t)
			args := append(append([]string{"cache"}, tt.args...), "--cache-dir", root)
			rc, out, errOut := capture(t, args...)
			if rc != tt.rc {
				t.Errorf("exit %d, want %d; stderr: %s", rc, tt.rc, errOut)
			}
			for _, s := range tt.out {
				if !strings.Contains(out, s) {
					t.Errorf("stdout lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tt.errOut {
				if !strings.Contains(errOut, s) {
					t.Errorf("stderr lacks %q:\n%s", s, errOut)
				}
			}
			_, err := os.Stat(filepath.Join(root, "kernels/old-2"))
			if gone := err != nil; gone != tt.oldGone {
				t.Errorf("old kernel unpack gone: %v, want %v", gone, tt.oldGone)
			}
			if _, err := os.Stat(filepath.Join(root, "initramfs/initramfs-new.cpio.xz")); err != nil {
				t.Errorf("the initramfs used now went: %v", err)
			}
			if tt.name == "json" {
				var u cachedir.Usage
				if err := json.Unmarshal([]byte(out), &u); err != nil || u.Entries != 2 || u.Root != root {
					t.Errorf("JSON: %v, %d entries in %s", err, u.Entries, u.Root)
				}
			}
		})
	}
}

// TestCacheHelp: each help ends with real examples.
func TestCacheHelp(t *testing.T) {
	for _, args := range [][]string{{"cache", "--help"}, {"cache", "prune", "--help"}} {
		rc, _, errOut := capture(t, args...)
		i := strings.Index(errOut, "\nExamples:\n  mkimage "+strings.Join(args[:len(args)-1], " "))
		if rc != 0 || i < 0 || strings.Count(errOut[i:], "\n  mkimage ") != 2 {
			t.Errorf("mkimage %s: exit %d, help does not end with two examples:\n%s", strings.Join(args, " "), rc, errOut)
		}
	}
}
