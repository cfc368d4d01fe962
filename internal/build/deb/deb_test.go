package deb

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/testenv"
)

// buildDeb builds a small package with dpkg-deb using compression z.
func buildDeb(t testing.TB, z string) string {
	t.Helper()
	testenv.NeedTools(t, "dpkg-deb")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	must(t, os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755))
	must(t, os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "DEBIAN/control"), []byte(
		"Package: hello\nVersion: 1:1.0-1\nArchitecture: arm64\nMaintainer: A <a@b>\n"+
			"Depends: libc6 (>= 2.36), foo | bar:any\nDescription: test\n second line\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(root, "usr/bin/hello"), []byte("hello world\n"), 0o755))
	must(t, os.Symlink("hello", filepath.Join(root, "usr/bin/hi")))
	out := filepath.Join(dir, "hello-"+z+".deb")
	cmd := exec.Command("dpkg-deb", "--root-owner-group", "-Z"+z, "--build", root, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, b)
	}
	return out
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpen(t *testing.T) {
	for _, z := range []struct{ flag, member string }{
		{"xz", "data.tar.xz"}, {"gzip", "data.tar.gz"}, {"zstd", "data.tar.zst"}, {"none", "data.tar"},
	} {
		t.Run(z.flag, func(t *testing.T) {
			p, err := Open(buildDeb(t, z.flag))
			if err != nil {
				t.Fatal(err)
			}
			c := p.Control()
			if c.Package != "hello" || c.Version != "1:1.0-1" || c.Architecture != "arm64" {
				t.Errorf("control = %+v", c)
			}
			if got := c.Get("description"); got != "test\n second line" {
				t.Errorf("Description = %q", got)
			}
			if p.DataMember() != z.member {
				t.Errorf("data member %q, want %q", p.DataMember(), z.member)
			}
			files := map[string]string{}
			err = p.Data(func(h *tar.Header, r io.Reader) error {
				b, err := io.ReadAll(r)
				if h.Typeflag == tar.TypeSymlink {
					b = []byte("-> " + h.Linkname)
				}
				files[h.Name] = string(b)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"./": "", "./usr/": "", "./usr/bin/": "", "./usr/bin/hello": "hello world\n", "./usr/bin/hi": "-> hello"}
			if !reflect.DeepEqual(files, want) {
				t.Errorf("data = %q, want %q", files, want)
			}
		})
	}
}

func TestParseDepends(t *testing.T) {
	got, err := ParseDepends("kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, libc6:arm64 [arm64], x <!nocheck>")
	if err != nil {
		t.Fatal(err)
	}
	want := [][]Dep{
		{{Name: "kmod"}},
		{{Name: "linux-base", Op: ">=", Version: "4.3~"}},
		{{Name: "initramfs-tools", Op: ">=", Version: "0.120+deb8u2"}, {Name: "linux-initramfs-tool"}},
		{{Name: "libc6", Arch: "arm64"}},
		{{Name: "x"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	for _, bad := range []string{"foo (>= 1", "foo (~ 1)", "a b"} {
		if _, err := ParseDepends(bad); err == nil {
			t.Errorf("ParseDepends(%q) accepted", bad)
		}
	}
}

func TestParseControlErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{" cont\n", "continuation line before any field"},
		{"Version: 1\n", "no Package field"},
		{"Package x\n", "is not a field"},
	} {
		if _, err := ParseControl([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseControl(%q) = %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestReadStanzas(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string // "line:Package"
		err      string
	}{
		{"empty", "", nil, ""},
		{"two stanzas, blank lines around", "\n\nPackage: a\nVersion: 1\n\n\nPackage: b\nDescription: x\n more\n", []string{"3:a", "7:b"}, ""},
		{"no final newline", "Package: a\n \t\nPackage: b", []string{"1:a", "3:b"}, ""},
		{"a bad stanza names its line", "Package: a\n\nVersion: 2\n", []string{"1:a"}, "stanza at line 3: no Package field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			err := ReadStanzas(strings.NewReader(tc.in), func(line int, c Control) error {
				got = append(got, fmt.Sprintf("%d:%s", line, c.Package))
				return nil
			})
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || err.Error() != tc.err) {
				t.Errorf("err = %v, want %q", err, tc.err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("stanzas %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCorrupt(t *testing.T) {
	good, err := os.ReadFile(buildDeb(t, "xz"))
	if err != nil {
		t.Fatal(err)
	}
	dataAt := strings.Index(string(good), "data.tar.xz")
	ctrlAt := strings.Index(string(good), "control.tar.xz")
	// A copy of good with the data member's size field unchanged but
	// its compressed bytes cut short and padded with garbage.
	garbled := append([]byte(nil), good...)
	for i := dataAt + 60 + 20; i < len(garbled)-8; i++ {
		garbled[i] = 'x'
	}
	badControl := append([]byte(nil), good...)
	copy(badControl[ctrlAt+60+30:], "garbage garbage")
	noBinary := append([]byte(nil), good...)
	copy(noBinary[8:], "debian-bonary/ ")
	noData := append([]byte(nil), good[:dataAt]...)
	if len(noData)%2 == 1 {
		noData = noData[:len(noData)-1]
	}
	for _, tc := range []struct {
		name string
		data []byte
		want string // in Open's or Data's error
	}{
		{"empty", nil, "not a Debian package: no ar header"},
		{"garbage", []byte("this is not an ar archive at all, no sir"), "not a Debian package: no ar header"},
		{"truncated header", good[:8+30], "ar member header at offset 8: unexpected EOF"},
		{"truncated data", good[:len(good)-100], `ar member "data.tar.xz": truncated`},
		{"no debian-binary", noBinary, "not a Debian package: no debian-binary member"},
		{"no data", noData, "not a Debian package: no data.tar member"},
		{"garbled data", garbled, "data.tar.xz: "},
		{"bad control", badControl, "control.tar.xz: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.deb")
			must(t, os.WriteFile(path, tc.data, 0o644))
			p, err := Open(path)
			if err == nil {
				err = p.Data(func(h *tar.Header, r io.Reader) error {
					_, err := io.Copy(io.Discard, r)
					return err
				})
			}
			if err == nil {
				t.Fatal("no error")
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), path+": ") {
				t.Errorf("error %q, want it to start with %q and contain %q", err, path, tc.want)
			}
		})
	}
}

func TestControlFilesAndOpenData(t *testing.T) {
	for _, z := range []string{"xz", "gzip", "zstd", "none"} {
		p, err := Open(buildDeb(t, z))
		if err != nil {
			t.Fatal(err)
		}
		var control []string
		must(t, p.ControlFiles(func(h *tar.Header, r io.Reader) error {
			control = append(control, strings.TrimPrefix(h.Name, "./"))
			return nil
		}))
		if !slices.Contains(control, "control") {
			t.Errorf("%s: control.tar entries %v lack control", z, control)
		}
		rc, err := p.OpenData()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		var found string
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			must(t, err)
			if h.Name == "./usr/bin/hello" {
				b, _ := io.ReadAll(tr)
				found = string(b)
			}
		}
		must(t, rc.Close())
		if found != "hello world\n" {
			t.Errorf("%s: OpenData gave usr/bin/hello %q", z, found)
		}
	}
}
