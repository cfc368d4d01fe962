package fstree

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sample builds a tree with every kind of entry; each call gives fresh
// inodes so a test can change one copy.
func sample() *Tree {
	t0 := time.Unix(1700000000, 123456789)
	tr := New(t0)
	etc, _ := tr.MkdirAll("etc", t0)
	f := NewFile(0o644, []byte("root:x:0:0\n"), t0)
	f.Xattrs = map[string][]byte{"user.a": []byte("1")}
	etc.Children["passwd"] = f
	bin, _ := tr.MkdirAll("bin", t0)
	big := NewFile(0o4755, []byte(strings.Repeat("x", 200000)), t0)
	bin.Children["su"] = big
	bin.Children["su2"] = big // hard link
	bin.Children["sh"] = NewSymlink("busybox", t0)
	dev, _ := tr.MkdirAll("dev", t0)
	dev.Children["null"] = &Inode{Mode: ModeChar | 0o666, Major: 1, Minor: 3, Atime: t0, Mtime: t0, Ctime: t0}
	dev.Children["fifo"] = &Inode{Mode: ModeFIFO | 0o600, Atime: t0, Mtime: t0, Ctime: t0}
	return tr
}

func TestDiff(t *testing.T) {
	at := func(tr *Tree, p string) *Inode {
		n, ok := tr.Lookup(p)
		if !ok {
			panic(p)
		}
		return n
	}
	for _, tc := range []struct {
		name   string
		opt    DiffOptions
		change func(b *Tree)
		want   []string
	}{
		{"equal", DiffOptions{}, func(b *Tree) {}, nil},
		{"only in b", DiffOptions{}, func(b *Tree) { b.Put("etc/new", NewFile(0o644, nil, time.Unix(0, 0))) },
			[]string{"/etc/new: only in b (regular file)"}},
		{"only in a", DiffOptions{}, func(b *Tree) { delete(at(b, "dev").Children, "fifo") },
			[]string{"/dev/fifo: only in a (fifo)"}},
		{"type", DiffOptions{}, func(b *Tree) { at(b, "dev/fifo").Mode = ModeSocket | 0o600 },
			[]string{"/dev/fifo: type fifo (a) != socket (b)"}},
		{"mode", DiffOptions{}, func(b *Tree) { at(b, "etc/passwd").Mode = ModeRegular | 0o600 },
			[]string{"/etc/passwd: mode 0644 (a) != 0600 (b)"}},
		{"setuid", DiffOptions{}, func(b *Tree) { at(b, "bin/su").Mode &^= 0o4000 },
			[]string{"/bin/su: mode 4755 (a) != 0755 (b)"}},
		{"uid", DiffOptions{}, func(b *Tree) { at(b, "etc").Uid = 1000 },
			[]string{"/etc: uid 0 (a) != 1000 (b)"}},
		{"gid", DiffOptions{}, func(b *Tree) { at(b, "etc").Gid = 5 },
			[]string{"/etc: gid 0 (a) != 5 (b)"}},
		{"mtime nanoseconds", DiffOptions{}, func(b *Tree) { n := at(b, "bin/sh"); n.Mtime = n.Mtime.Add(1) },
			[]string{"/bin/sh: mtime 2023-11-14T22:13:20.123456789Z (a) != 2023-11-14T22:13:20.12345679Z (b)"}},
		{"atime", DiffOptions{}, func(b *Tree) { n := at(b, "bin"); n.Atime = n.Atime.Add(time.Second) },
			[]string{"/bin: atime 2023-11-14T22:13:20.123456789Z (a) != 2023-11-14T22:13:21.123456789Z (b)"}},
		{"atime ignored", DiffOptions{IgnoreAtime: true}, func(b *Tree) { n := at(b, "bin"); n.Atime = n.Atime.Add(time.Second) }, nil},
		{"ctime", DiffOptions{IgnoreAtime: true}, func(b *Tree) { n := at(b, "bin"); n.Ctime = time.Unix(0, 0) },
			[]string{"/bin: ctime 2023-11-14T22:13:20.123456789Z (a) != 1970-01-01T00:00:00Z (b)"}},
		{"ctime ignored", DiffOptions{IgnoreCtime: true}, func(b *Tree) { n := at(b, "bin"); n.Ctime = time.Unix(0, 0) }, nil},
		{"root", DiffOptions{}, func(b *Tree) { b.Root.Mode = ModeDir | 0o700 },
			[]string{"/: mode 0755 (a) != 0700 (b)"}},
		{"root ignored", DiffOptions{IgnoreRoot: true}, func(b *Tree) { b.Root.Mode = ModeDir | 0o700; b.Root.Uid = 1 }, nil},
		{"xattr value", DiffOptions{}, func(b *Tree) { at(b, "etc/passwd").Xattrs["user.a"] = []byte("2") },
			[]string{`/etc/passwd: xattr user.a "1" (a) != "2" (b)`}},
		{"xattr missing", DiffOptions{}, func(b *Tree) { at(b, "etc/passwd").Xattrs = nil },
			[]string{"/etc/passwd: xattr user.a only in a"}},
		{"xattr added", DiffOptions{}, func(b *Tree) {
			at(b, "bin/sh").Xattrs = map[string][]byte{"security.capability": {1}}
		}, []string{"/bin/sh: xattr security.capability only in b"}},
		{"symlink target", DiffOptions{}, func(b *Tree) { at(b, "bin/sh").Target = "dash" },
			[]string{`/bin/sh: symlink target "busybox" (a) != "dash" (b)`}},
		{"rdev", DiffOptions{}, func(b *Tree) { at(b, "dev/null").Minor = 0; at(b, "dev/null").Major = 0 },
			[]string{"/dev/null: device 1:3 (a) != 0:0 (b)"}},
		{"content", DiffOptions{}, func(b *Tree) {
			data := []byte(strings.Repeat("x", 200000))
			data[150000] = 'y'
			at(b, "bin/su").Content = Bytes(data)
		}, []string{"/bin/su: content differs from byte 150000"}},
		{"size", DiffOptions{}, func(b *Tree) { at(b, "etc/passwd").Content = Bytes("root") },
			[]string{"/etc/passwd: size 11 (a) != 4 (b)"}},
		{"hard link broken", DiffOptions{}, func(b *Tree) {
			copy := *at(b, "bin/su")
			at(b, "bin").Children["su2"] = &copy
		}, []string{
			"/bin/su: hard links [/bin/su /bin/su2] (a) != [] (b)",
			"/bin/su2: hard links [/bin/su /bin/su2] (a) != [] (b)",
		}},
		{"hard link added", DiffOptions{}, func(b *Tree) { at(b, "etc").Children["passwd"] = at(b, "bin/su") }, []string{
			"/bin/su: hard links [/bin/su /bin/su2] (a) != [/bin/su /bin/su2 /etc/passwd] (b)",
			"/bin/su2: hard links [/bin/su /bin/su2] (a) != [/bin/su /bin/su2 /etc/passwd] (b)",
			"/etc/passwd: hard links [] (a) != [/bin/su /bin/su2 /etc/passwd] (b)",
			"/etc/passwd: mode 0644 (a) != 4755 (b)",
			"/etc/passwd: xattr user.a only in a",
			"/etc/passwd: size 11 (a) != 200000 (b)",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := sample(), sample()
			tc.change(b)
			got, err := Diff(a, b, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Diff =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

type failing struct{}

func (failing) Size() int64 { return 1 }
func (failing) Open() (r io.ReadCloser, err error) {
	return nil, errors.New("disk on fire")
}

func TestDiffReadError(t *testing.T) {
	a, b := sample(), sample()
	n, _ := b.Lookup("etc/passwd")
	n.Content = Bytes("x")
	m, _ := a.Lookup("etc/passwd")
	m.Content = failing{}
	_, err := Diff(a, b, DiffOptions{})
	if err == nil || err.Error() != "/etc/passwd: a: disk on fire" {
		t.Errorf("err = %v", err)
	}
}
