package sendstream

import (
	"bytes"
	"errors"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/fstree/fstreetest"
)

func full(t testing.TB, tr *fstree.Tree, o Options) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteFull(&b, tr, o); err != nil {
		t.Fatalf("WriteFull: %v", err)
	}
	return b.Bytes()
}

func incremental(t testing.TB, parent, child *fstree.Tree, o Options) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteIncremental(&b, parent, child, o); err != nil {
		t.Fatalf("WriteIncremental: %v", err)
	}
	return b.Bytes()
}

func TestHeader(t *testing.T) {
	b := full(t, fstree.New(epoch), Options{Name: "v", UUID: [16]byte{1, 2}, CTransid: 3})
	if !bytes.HasPrefix(b, []byte("btrfs-stream\x00\x01\x00\x00\x00")) {
		t.Fatalf("header % x", b[:17])
	}
	ops := decode(t, b)
	if ops[0].cmd != "subvol" || ops[0].path != "v" || !bytes.Equal(ops[0].attrs[attrUUID], append([]byte{1, 2}, make([]byte, 14)...)) || u64(ops[0].attrs[attrCtransid]) != 3 {
		t.Errorf("first command %v %v", ops[0], ops[0].attrs)
	}
}

// TestFullOrder checks the ordering rules receive depends on in the
// full stream of the base tree.
func TestFullOrder(t *testing.T) {
	tr := baseTree(t)
	ops := decode(t, full(t, tr, baseOpts))
	created := map[string]int{"": 0}
	last := map[string]int{} // last command on a path or below it
	for i, o := range ops[1 : len(ops)-1] {
		i++
		switch o.cmd {
		case "mkfile", "mkdir", "mknod", "mkfifo", "mksock", "symlink", "link":
			if _, ok := created[path.Dir("/" + o.path)[1:]]; !ok {
				t.Errorf("%d %v: parent not made before", i, o)
			}
			if _, ok := created[o.path]; ok {
				t.Errorf("%d %v: made twice", i, o)
			}
			created[o.path] = i
		default:
			if _, ok := created[o.path]; !ok {
				t.Errorf("%d %v: before the path exists", i, o)
			}
		}
		if o.cmd == "link" {
			if _, ok := created[string(o.attrs[attrPathLink])]; !ok {
				t.Errorf("%d %v: link to %q, not made before", i, o, o.attrs[attrPathLink])
			}
		}
		if o.cmd == "write" && len(o.attrs[attrData]) > WriteChunk {
			t.Errorf("%d %v: %d bytes of data", i, o, len(o.attrs[attrData]))
		}
		for p := o.path; ; p = path.Dir("/" + p)[1:] {
			last[p] = i
			if p == "" {
				break
			}
		}
	}
	all := names(tr)
	tr.Walk(func(p string, n *fstree.Inode) error {
		var seq []string
		var utimes int
		for i, o := range ops {
			if o.path == p {
				seq = append(seq, o.cmd+" "+string(o.attrs[attrXattrName]))
				if o.cmd == "utimes" {
					utimes = i
				}
			}
		}
		if first := all[n][0]; first != p {
			if len(seq) != 1 || seq[0] != "link " {
				t.Errorf("/%s: further name of /%s: %v", p, first, seq)
			}
			return nil
		}
		if utimes == 0 {
			t.Errorf("/%s: no utimes", p)
		} else if utimes < last[p] {
			t.Errorf("/%s: utimes at %d before a later change at %d", p, utimes, last[p])
		}
		// Owner, then mode (chown drops setuid), then the capability.
		order := func(a, b string) {
			ia, ib := slices.Index(seq, a), slices.Index(seq, b)
			if ia >= 0 && ib >= 0 && ia > ib {
				t.Errorf("/%s: %q after %q: %v", p, a, b, seq)
			}
		}
		order("write ", "chown ")
		order("chown ", "chmod ")
		order("chmod ", "set_xattr "+capability)
		order("chown ", "set_xattr "+capability)
		return nil
	})
	count := func(cmd, p string) int {
		n := 0
		for _, o := range ops {
			if o.cmd == cmd && o.path == p {
				n++
			}
		}
		return n
	}
	for _, c := range []struct {
		cmd, path string
		want      int
	}{
		{"write", "sizes/f0", 0},
		{"write", "sizes/f49152", 1},
		{"write", "sizes/f49153", 2},
		{"write", "sizes/f1048579", 22},
		{"truncate", "sizes/f49152", 0},
		{"write", "sparse/allhole", 0},
		{"truncate", "sparse/allhole", 1},
		{"write", "sparse/middle", 22},
		{"truncate", "sparse/middle", 1},
		{"write", "sparse/unaligned", 4},
		{"truncate", "sparse/unaligned", 0},
		{"link", "srv/hl2", 1},
		{"link", "links/b", 1},
		{"link", "srv/c", 1},
		{"mkfile", "srv/c", 0},
		{"chmod", "bin/link", 0}, // receive's chmod would follow it
		{"mknod", "dev/null", 1},
		{"mkfifo", "run/fifo", 1},
		{"mksock", "run/sock", 1},
	} {
		if got := count(c.cmd, c.path); got != c.want {
			t.Errorf("%d %s %s, want %d", got, c.cmd, c.path, c.want)
		}
	}
	for _, o := range ops {
		if o.cmd == "mknod" && o.path == "dev/big" {
			if got := u64(o.attrs[attrRdev]); got != 0xfff00|0xff|0xfff00<<12 {
				t.Errorf("dev/big rdev %#x", got)
			}
		}
	}
}

func TestDeterministic(t *testing.T) {
	a := full(t, baseTree(t), baseOpts)
	for i := 0; i < 3; i++ {
		if b := full(t, baseTree(t).Clone(), baseOpts); !bytes.Equal(a, b) {
			t.Fatal("two streams of the same tree differ")
		}
	}
	c := changes[len(changes)-2]
	x := incremental(t, baseTree(t), c.child(t), childOpts(1, c))
	if y := incremental(t, baseTree(t).Clone(), c.child(t), childOpts(1, c)); !bytes.Equal(x, y) {
		t.Fatal("two incremental streams of the same trees differ")
	}
}

// TestIncrementalCommands checks the exact commands of the small changes.
func TestIncrementalCommands(t *testing.T) {
	for i, c := range changes {
		if c.want == nil {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			ops := decode(t, incremental(t, baseTree(t), c.child(t), childOpts(i, c)))
			if ops[0].cmd != "snapshot" || !bytes.Equal(ops[0].attrs[attrCloneUUID], baseOpts.UUID[:]) || u64(ops[0].attrs[attrCloneCtransid]) != baseOpts.CTransid {
				t.Errorf("first command %v %v", ops[0], ops[0].attrs)
			}
			var got []string
			for _, o := range ops[1 : len(ops)-1] {
				got = append(got, o.String())
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

// TestIncrementalSize: a one-file change sends about that file, not the
// tree.
func TestIncrementalSize(t *testing.T) {
	c := changes[1]
	f := len(full(t, baseTree(t), baseOpts))
	n := len(incremental(t, baseTree(t), c.child(t), childOpts(1, c)))
	if n > WriteChunk+1000 {
		t.Errorf("one-file change: %d bytes (full stream %d)", n, f)
	}
}

type failWriter struct{ after int }

func (w *failWriter) Write(b []byte) (int, error) {
	if w.after -= len(b); w.after < 0 {
		return 0, errors.New("disk full")
	}
	return len(b), nil
}

func TestErrors(t *testing.T) {
	long := fstree.New(epoch)
	p := ""
	for i := 0; i < 20; i++ {
		p = path.Join(p, strings.Repeat("x", 250))
	}
	put(t, long, p, file(0o644, nil, 1))
	bigx := fstree.New(epoch)
	n := file(0o644, nil, 1)
	n.Xattrs = map[string][]byte{"user.big": make([]byte, 70000)}
	put(t, bigx, "f", n)
	badExt := fstree.New(epoch)
	put(t, badExt, "f", &fstree.Inode{Mode: fstree.ModeRegular | 0o644, Content: fstreetest.Sparse(10, 1, fstree.Extent{Offset: 5, Length: 10})})
	slash := fstree.New(epoch)
	slash.Root.Children["a/b"] = file(0o644, nil, 1)
	for _, c := range []struct {
		name string
		tree *fstree.Tree
		opts Options
		w    *failWriter
		want string
	}{
		{"no name", fstree.New(epoch), Options{}, nil, "invalid subvolume name"},
		{"slash in name", fstree.New(epoch), Options{Name: "a/b"}, nil, "invalid subvolume name"},
		{"long path", long, Options{Name: "v"}, nil, "longer than receive accepts"},
		{"big xattr", bigx, Options{Name: "v"}, nil, "/f: xattr value is 70000 bytes"},
		{"bad extent", badExt, Options{Name: "v"}, nil, "past the end"},
		{"invalid tree", slash, Options{Name: "v"}, nil, "invalid entry name"},
		{"write error", baseTree(t), Options{Name: "v"}, &failWriter{after: 1000}, "disk full"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var w interface{ Write([]byte) (int, error) } = &bytes.Buffer{}
			if c.w != nil {
				w = c.w
			}
			err := WriteFull(w, c.tree, c.opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("WriteFull: %v, want %q", err, c.want)
			}
			err = WriteIncremental(w, fstree.New(epoch), c.tree, c.opts)
			if c.name != "write error" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Errorf("WriteIncremental: %v, want %q", err, c.want)
			}
		})
	}
}

func TestTempName(t *testing.T) {
	dir := func(names ...string) *fstree.Inode {
		d := fstree.NewDir(0o755, epoch)
		for _, n := range names {
			d.Children[n] = file(0o644, nil, 1)
		}
		return d
	}
	for _, c := range []struct {
		old, new *fstree.Inode
		want     string
	}{
		{dir(), dir(), "o300-0-0"},
		{dir("o300-0-0"), dir(), "o300-0-1"},
		{dir("o300-0-0"), dir("o300-0-1", "o300-0-2"), "o300-0-3"},
		{dir("o301-0-0"), dir(), "o300-0-0"},
	} {
		if got := tempName(c.old, c.new, 300); got != c.want {
			t.Errorf("tempName among %v and %v: %s, want %s", c.old.Names(), c.new.Names(), got, c.want)
		}
	}
}
