package hookdir

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestList(t *testing.T) {
	root := t.TempDir()
	const etc, lib = "etc/hooks.d", "usr/lib/hooks.d"
	file := func(p string, mode os.FileMode) {
		t.Helper()
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	link := func(p, target string) {
		t.Helper()
		if err := os.Symlink(target, filepath.Join(root, p)); err != nil {
			t.Fatal(err)
		}
	}
	file(lib+"/50-system", 0o755)
	file(lib+"/60-replaced", 0o755)
	file(etc+"/60-replaced", 0o700)
	file(lib+"/70-masked", 0o755)
	file(etc+"/70-masked", 0o644) // not executable: hides the image's
	file(lib+"/75-masked-link", 0o755)
	link(etc+"/75-masked-link", "/dev/null")
	file(etc+"/10-user", 0o755)
	file(etc+"/20-not-executable", 0o644)
	file(etc+"/.hidden", 0o755)
	file(etc+"/30-backup~", 0o755)
	link(etc+"/40-inside-root", "/usr/bin/check") // resolves only inside root
	if err := os.MkdirAll(filepath.Join(root, etc, "80-dir"), 0o755); err != nil {
		t.Fatal(err)
	}

	got, err := List(root, etc, lib, "missing.d")
	if err != nil {
		t.Fatal(err)
	}
	want := []Hook{
		{"10-user", etc + "/10-user"},
		{"40-inside-root", etc + "/40-inside-root"},
		{"50-system", lib + "/50-system"},
		{"60-replaced", etc + "/60-replaced"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("List:\n got %v\nwant %v", got, want)
	}

	if got, err := List(t.TempDir(), "none"); err != nil || len(got) != 0 {
		t.Errorf("List of a missing directory = %v, %v; want nothing", got, err)
	}
	// A directory that cannot be read is an error, not an empty list.
	if err := os.WriteFile(filepath.Join(root, "notadir"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := List(root, "notadir"); err == nil {
		t.Error("List of a file as directory: no error")
	}
}
