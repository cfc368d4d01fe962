package fstree

import (
	"strings"
	"testing"
	"time"
)

func TestCleanRejectsEscapes(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"a/b", "a/b", true}, {"./a//b/", "a/b", true}, {".", "", true}, {"", "", true},
		{"/etc", "", false}, {"../x", "", false}, {"a/../../x", "", false}, {"a/..", "", false}, {"a\x00b", "", false},
	} {
		got, err := Clean(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("Clean(%q) = %q, %v; want %q ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestPutRefusesPathThroughSymlinkOrFile(t *testing.T) {
	epoch := time.Unix(0, 0)
	tr := New(epoch)
	if err := tr.Put("etc", NewSymlink("/tmp", epoch)); err != nil {
		t.Fatal(err)
	}
	if err := tr.Put("etc/passwd", NewFile(0o644, nil, epoch)); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("put through a symlink: %v", err)
	}
	tr.Put("f", NewFile(0o644, nil, epoch))
	if err := tr.Put("f/x", NewFile(0o644, nil, epoch)); err == nil {
		t.Fatal("put below a regular file was accepted")
	}
	if _, err := tr.MkdirAll("etc/x", epoch); err == nil {
		t.Fatal("MkdirAll through a symlink was accepted")
	}
}

func TestMergeAndWalkOrder(t *testing.T) {
	epoch := time.Unix(0, 0)
	base := New(epoch)
	base.MkdirAll("etc", epoch)
	base.Put("etc/a", NewFile(0o644, []byte("old"), epoch))
	base.Put("etc/keep", NewFile(0o644, []byte("k"), epoch))
	over := New(epoch)
	d, _ := over.MkdirAll("etc", epoch)
	d.Mode = ModeDir | 0o700
	over.Put("etc/a", NewFile(0o600, []byte("new"), epoch))
	over.Put("z", NewSymlink("etc/a", epoch))
	base.Merge(over)

	var got []string
	base.Walk(func(p string, n *Inode) error { got = append(got, p); return nil })
	if want := ",etc,etc/a,etc/keep,z"; strings.Join(got, ",") != want {
		t.Fatalf("walk order %q, want %q", strings.Join(got, ","), want)
	}
	a, _ := base.Lookup("etc/a")
	if b, _ := ReadAll(a.Content); string(b) != "new" || a.Mode&ModePerm != 0o600 {
		t.Fatalf("overlay file not applied: %q %o", b, a.Mode)
	}
	etc, _ := base.Lookup("etc")
	if etc.Mode&ModePerm != 0o700 {
		t.Fatalf("overlay dir mode not applied: %o", etc.Mode)
	}
}

func TestValidateAndStats(t *testing.T) {
	epoch := time.Unix(0, 0)
	tr := New(epoch)
	f := NewFile(0o644, []byte("hello"), epoch)
	tr.Put("a", f)
	tr.Put("b", f) // hard link
	if err := tr.Validate(); err != nil {
		t.Fatal(err)
	}
	if s := tr.Stats(); s.Entries != 3 || s.Inodes != 2 || s.DataBytes != 5 {
		t.Fatalf("stats %+v", s)
	}
	d := NewDir(0o755, epoch)
	tr.Put("d1", d)
	tr.Put("d2", d)
	if err := tr.Validate(); err == nil || !strings.Contains(err.Error(), "hard link") {
		t.Fatalf("hard-linked directory: %v", err)
	}
}
