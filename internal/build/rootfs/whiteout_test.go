package rootfs

import (
	"archive/tar"
	"bytes"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/fstree"
)

// layers lays tars over each other as OCI image layers, with a budget.
func layers(t *testing.T, budget int64, tars ...[]byte) (*fstree.Tree, error) {
	tr := fstree.New(time.Unix(42, 0))
	for i, b := range tars {
		if err := AddTar(tr, fmt.Sprintf("layer%d", i), bytes.NewReader(b), TarOptions{Epoch: time.Unix(42, 0), Whiteouts: true, Budget: &budget}); err != nil {
			return tr, err
		}
	}
	return tr, nil
}

// listing is the tree as "path" (directories with a /, symlinks with
// ->target, files with =data), sorted.
func listing(tr *fstree.Tree) string {
	var out []string
	tr.Walk(func(p string, n *fstree.Inode) error {
		switch n.Type() {
		case fstree.ModeDir:
			if p != "" {
				out = append(out, p+"/")
			}
		case fstree.ModeSymlink:
			out = append(out, p+"->"+n.Target)
		default:
			b, _ := fstree.ReadAll(n.Content)
			out = append(out, p+"="+string(b))
		}
		return nil
	})
	sort.Strings(out)
	return strings.Join(out, " ")
}

func dir(name string) entry         { return entry{name: name, typ: tar.TypeDir} }
func file(name, data string) entry  { return entry{name: name, typ: tar.TypeReg, data: data} }
func wh(name string) entry          { return entry{name: name, typ: tar.TypeReg} }
func link(name, to string) entry    { return entry{name: name, typ: tar.TypeLink, link: to} }
func symlink(name, to string) entry { return entry{name: name, typ: tar.TypeSymlink, link: to} }

// hugeClaim is a tar whose one entry claims 1 TiB over a short stream.
func hugeClaim(t *testing.T) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	must(t, tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 40, Format: tar.FormatPAX}))
	tw.Flush()
	return append(buf.Bytes(), make([]byte, 4096)...)
}

func TestWhiteouts(t *testing.T) {
	lower := []entry{dir("a/"), file("a/x", "1"), file("a/y", "2"), dir("d/"), file("d/old", "o"), dir("d/sub/"), file("d/sub/deep", "p"), file("bin/busybox", "bb"), dir("etc/"), file("etc/passwd", "root"), symlink("s", "/etc")}
	const rest = "bin/ bin/busybox=bb etc/ etc/passwd=root s->/etc"
	for _, tc := range []struct {
		name   string
		upper  []entry
		want   string // listing, when no error
		err    string
		budget int64
	}{
		{name: "file whiteout", upper: []entry{wh("a/.wh.x")}, want: "a/ a/y=2 " + rest + " d/ d/old=o d/sub/ d/sub/deep=p"},
		{name: "dir whiteout", upper: []entry{wh(".wh.d")}, want: "a/ a/x=1 a/y=2 " + rest},
		{name: "opaque first", upper: []entry{dir("d/"), wh("d/.wh..wh..opq"), file("d/new", "n")}, want: "a/ a/x=1 a/y=2 " + rest + " d/ d/new=n"},
		// The marker after the layer's own entries keeps those, and
		// empties what lower layers put at any depth below.
		{name: "opaque last", upper: []entry{dir("d/"), file("d/new", "n"), dir("d/sub/"), file("d/sub/n2", "m"), wh("d/.wh..wh..opq")}, want: "a/ a/x=1 a/y=2 " + rest + " d/ d/new=n d/sub/ d/sub/n2=m"},
		{name: "same layer not hidden", upper: []entry{file("a/z", "3"), wh("a/.wh.z")}, want: "a/ a/x=1 a/y=2 a/z=3 " + rest + " d/ d/old=o d/sub/ d/sub/deep=p"},
		{name: "whiteout of missing", upper: []entry{wh("nope/.wh.x"), wh(".wh.nothing")}, want: "a/ a/x=1 a/y=2 " + rest + " d/ d/old=o d/sub/ d/sub/deep=p"},
		{name: "whiteout through symlink", upper: []entry{wh("s/.wh.passwd"), wh("s/.wh..wh..opq")}, want: "a/ a/x=1 a/y=2 " + rest + " d/ d/old=o d/sub/ d/sub/deep=p"},
		{name: "aufs metadata skipped", upper: []entry{dir(".wh..wh.plnk/"), wh(".wh..wh.aufs")}, want: "a/ a/x=1 a/y=2 " + rest + " d/ d/old=o d/sub/ d/sub/deep=p"},
		{name: "replace dir by file", upper: []entry{wh(".wh.d"), file("d", "f")}, want: "a/ a/x=1 a/y=2 " + rest + " d=f"},
		{name: "hard link across layers", upper: []entry{link("bin/sh", "bin/busybox")}, want: "a/ a/x=1 a/y=2 bin/ bin/busybox=bb bin/sh=bb etc/ etc/passwd=root s->/etc d/ d/old=o d/sub/ d/sub/deep=p"},
		{name: "hard link to whited out", upper: []entry{wh("bin/.wh.busybox"), link("bin/sh", "bin/busybox")}, err: `layer1: entry "bin/sh": hard link to "bin/busybox", which is not in the archive before it`},
		{name: "escape dotdot", upper: []entry{file("../x", "e")}, err: `layer1: entry "../x": path "../x" leaves the root`},
		{name: "escape whiteout dotdot", upper: []entry{wh("a/../../.wh.etc")}, err: `leaves the root`},
		{name: "escape absolute", upper: []entry{file("/etc/shadow", "e")}, err: `layer1: entry "/etc/shadow": absolute path`},
		{name: "escape through symlink", upper: []entry{file("s/shadow", "e")}, err: `layer1: entry "s/shadow": s is not a directory (it is a symlink)`},
		{name: "budget", upper: []entry{file("a/big", strings.Repeat("x", 3000))}, budget: 13 * 512, err: `layer1: entry "a/big": 3000 more bytes are over the size bound`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			budget := tc.budget
			if budget == 0 {
				budget = 1 << 20
			}
			tr, err := layers(t, budget, buildTar(t, lower), buildTar(t, tc.upper))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// The listing sorts, so "d..." entries may come anywhere.
			want := strings.Fields(tc.want)
			sort.Strings(want)
			if got := listing(tr); got != strings.Join(want, " ") {
				t.Errorf("tree:\n%s\nwant:\n%s", got, strings.Join(want, " "))
			}
			if tc.name == "hard link across layers" {
				a, _ := tr.Lookup("bin/sh")
				b, _ := tr.Lookup("bin/busybox")
				if a != b {
					t.Error("bin/sh is not the same inode as bin/busybox")
				}
			}
		})
	}
}

// A header claiming a terabyte fails on the budget before anything is
// read or allocated for it; without Whiteouts too.
func TestBudgetHugeClaim(t *testing.T) {
	budget := int64(64 << 20)
	tr := fstree.New(time.Unix(0, 0))
	err := AddTar(tr, "huge.tar", bytes.NewReader(hugeClaim(t)), TarOptions{Budget: &budget})
	if err == nil || !strings.Contains(err.Error(), `huge.tar: entry "big": 1099511627776 more bytes are over the size bound`) {
		t.Fatalf("err = %v", err)
	}
	// The budget is shared: two layers that fit alone do not together.
	budget = 2000
	one := buildTar(t, []entry{file("f", strings.Repeat("x", 600))})
	if _, err := layers(t, 2000, one); err != nil {
		t.Fatalf("one layer: %v", err)
	}
	if _, err := layers(t, 2000, one, one); err == nil || !strings.Contains(err.Error(), "layer1") {
		t.Fatalf("two layers: err = %v, want layer1 over the bound", err)
	}
}
