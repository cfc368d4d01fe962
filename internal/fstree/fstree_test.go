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

func TestHashSeesEveryAttribute(t *testing.T) {
	epoch := time.Unix(100, 5)
	mk := func(mut func(tr *Tree)) string {
		tr := New(epoch)
		tr.Put("f", NewFile(0o644, []byte("x"), epoch))
		tr.Put("l", NewSymlink("f", epoch))
		if mut != nil {
			mut(tr)
		}
		h, err := tr.Hash()
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	base := mk(nil)
	if mk(nil) != base {
		t.Fatal("hash not stable")
	}
	for name, mut := range map[string]func(*Tree){
		"content":  func(tr *Tree) { n, _ := tr.Lookup("f"); n.Content = Bytes("y") },
		"mode":     func(tr *Tree) { n, _ := tr.Lookup("f"); n.Mode = ModeRegular | 0o600 },
		"uid":      func(tr *Tree) { n, _ := tr.Lookup("f"); n.Uid = 1 },
		"mtime":    func(tr *Tree) { n, _ := tr.Lookup("f"); n.Mtime = epoch.Add(1) },
		"xattr":    func(tr *Tree) { n, _ := tr.Lookup("f"); n.Xattrs = map[string][]byte{"user.a": nil} },
		"target":   func(tr *Tree) { n, _ := tr.Lookup("l"); n.Target = "g" },
		"hardlink": func(tr *Tree) { n, _ := tr.Lookup("f"); tr.Put("g", n) },
		"copy":     func(tr *Tree) { tr.Put("g", NewFile(0o644, []byte("x"), epoch)) },
	} {
		if mk(mut) == base {
			t.Errorf("hash ignores %s", name)
		}
	}
	if mk(func(tr *Tree) { n, _ := tr.Lookup("f"); tr.Put("g", n) }) == mk(func(tr *Tree) { tr.Put("g", NewFile(0o644, []byte("x"), epoch)) }) {
		t.Error("hash does not tell a hard link from a copy")
	}
}

func TestMergeKeepsTopAndAddKeepsDirs(t *testing.T) {
	epoch := time.Unix(0, 0)
	later := time.Unix(1000, 0)
	base := New(later)
	base.Root.Mode = ModeDir | 0o700
	etc, _ := base.MkdirAll("etc", later)
	etc.Uid = 7

	ov := New(epoch)
	ov.MkdirAll("etc/x", epoch)
	base.Add(ov)
	if base.Root.Mode != ModeDir|0o700 || etc.Uid != 7 || !etc.Mtime.Equal(later) {
		t.Fatalf("Add changed existing dirs: root %o etc uid %d mtime %v", base.Root.Mode, etc.Uid, etc.Mtime)
	}
	if _, ok := base.Lookup("etc/x"); !ok {
		t.Fatal("Add lost etc/x")
	}
	base.Merge(ov)
	if base.Root.Mode != ModeDir|0o700 {
		t.Fatal("Merge changed the top directory")
	}
	if etc.Uid != 0 || !etc.Mtime.Equal(epoch) {
		t.Fatal("Merge did not apply the overlay's directory metadata")
	}
}

func TestMergeKeepsDirectorySymlinks(t *testing.T) {
	epoch := time.Unix(0, 0)
	base := New(epoch)
	base.MkdirAll("usr/lib/systemd", epoch)
	base.Put("lib", NewSymlink("usr/lib", epoch))
	base.Put("bin", NewSymlink("/usr/bin", epoch)) // dangling: usr/bin missing
	ov := New(epoch)
	ov.MkdirAll("lib/modules/6.1", epoch)
	ov.Put("lib/modules/6.1/x.ko", NewFile(0o644, []byte("ko"), epoch))
	ov.MkdirAll("bin", epoch)
	base.Add(ov)
	if l, _ := base.Lookup("lib"); l.Type() != ModeSymlink {
		t.Fatal("the lib symlink was replaced by a directory")
	}
	if _, ok := base.Lookup("usr/lib/modules/6.1/x.ko"); !ok {
		t.Fatal("overlay content did not land behind the lib symlink")
	}
	if _, ok := base.Lookup("usr/lib/systemd"); !ok {
		t.Fatal("existing content behind the symlink lost")
	}
	// A symlink to nothing is replaced, as tar would.
	if b, _ := base.Lookup("bin"); !b.IsDir() {
		t.Fatal("a dangling symlink kept over an overlay directory")
	}
	if p, err := base.Resolve("lib/modules/../../lib"); err != nil || p != "usr/lib" {
		t.Fatalf("Resolve = %q, %v", p, err)
	}
	base.Put("loop", NewSymlink("loop", epoch))
	if _, err := base.Resolve("loop/x"); err == nil {
		t.Fatal("symlink loop resolved")
	}
}

func TestClone(t *testing.T) {
	tr := New(time.Unix(5, 0))
	f := NewFile(0o644, []byte("x"), time.Unix(5, 0))
	f.Xattrs = map[string][]byte{"user.a": []byte("1")}
	if _, err := tr.MkdirAll("d", time.Unix(5, 0)); err != nil {
		t.Fatal(err)
	}
	if err := tr.Put("d/f", f); err != nil {
		t.Fatal(err)
	}
	if err := tr.Put("link", f); err != nil { // a hard link
		t.Fatal(err)
	}
	c := tr.Clone()
	cf, _ := c.Lookup("d/f")
	cl, _ := c.Lookup("link")
	if cf == f || cf != cl {
		t.Fatal("clone shares the inode with the source, or lost the hard link")
	}
	cf.Mode = 0o600
	cf.Xattrs["user.a"] = []byte("2")
	delete(c.Root.Children, "d")
	if f.Mode&0o777 != 0o644 || string(f.Xattrs["user.a"]) != "1" {
		t.Error("changing the clone changed the source's inode")
	}
	if _, ok := tr.Lookup("d/f"); !ok {
		t.Error("removing from the clone removed from the source")
	}
}

func TestSparseBytes(t *testing.T) {
	s := &SparseBytes{Length: 12, Ranges: []Extent{{Offset: 2, Length: 3}, {Offset: 8, Length: 1}}, Data: [][]byte{[]byte("abc"), []byte("d")}}
	got, err := ReadAll(s)
	if err != nil || string(got) != "\x00\x00abc\x00\x00\x00d\x00\x00\x00" {
		t.Errorf("ReadAll: %q, %v", got, err)
	}
	if s.Size() != 12 || len(s.Extents()) != 2 {
		t.Errorf("size %d, extents %v", s.Size(), s.Extents())
	}
}
