package debroot

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/fstree"
)

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

type entry struct {
	name, data, link string
	mode             int64
	uid              int
	dir              bool
}

func tarGz(t *testing.T, ents []entry) []byte {
	t.Helper()
	var b bytes.Buffer
	gz := gzip.NewWriter(&b)
	tw := tar.NewWriter(gz)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.uid, ModTime: time.Unix(1e9, 0), Format: tar.FormatGNU}
		switch {
		case e.dir:
			h.Typeflag = tar.TypeDir
		case e.link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.link
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.data))
	}
	tw.Close()
	gz.Close()
	return b.Bytes()
}

// makeDeb writes a .deb with the given control files and data entries
// and returns its path and sha256.
func makeDeb(t *testing.T, dir, name, version string, control map[string]string, data []entry) (string, string) {
	t.Helper()
	ctl := []entry{{name: "./", dir: true, mode: 0o755}}
	ctl = append(ctl, entry{name: "./control", mode: 0o644, data: fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: arm64\nMaintainer: t <t@example.org>\nDescription: test\n multi-line\n", name, version)})
	for n, d := range control {
		mode := int64(0o644)
		if strings.HasSuffix(n, "inst") || strings.HasSuffix(n, "rm") {
			mode = 0o755
		}
		ctl = append(ctl, entry{name: "./" + n, data: d, mode: mode})
	}
	var ar bytes.Buffer
	ar.WriteString("!<arch>\n")
	for _, m := range []struct {
		name string
		data []byte
	}{{"debian-binary", []byte("2.0\n")}, {"control.tar.gz", tarGz(t, ctl)}, {"data.tar.gz", tarGz(t, data)}} {
		fmt.Fprintf(&ar, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", m.name, 0, 0, 0, "100644", len(m.data))
		ar.Write(m.data)
		if len(m.data)%2 == 1 {
			ar.WriteByte('\n')
		}
	}
	p := filepath.Join(dir, name+"_"+version+"_arm64.deb")
	writeFile(t, p, ar.Bytes())
	h := sha256.Sum256(ar.Bytes())
	return p, hex.EncodeToString(h[:])
}

func fakeDebs(t *testing.T) []Deb {
	dir := t.TempDir()
	var out []Deb
	add := func(name, ma string, control map[string]string, data []entry) {
		p, sum := makeDeb(t, dir, name, "1.0-1", control, data)
		out = append(out, Deb{Pkg: &Pkg{Name: name, Version: "1.0-1", Arch: "arm64", MultiArch: ma, SHA256: sum}, Path: p})
	}
	add("base-passwd", "", map[string]string{"preinst": "#!/bin/sh\nexit 0\n", "postinst": "#!/bin/sh\n"}, []entry{
		{name: "./", dir: true, mode: 0o755},
		{name: "./usr/", dir: true, mode: 0o755},
		{name: "./usr/sbin/", dir: true, mode: 0o755},
		{name: "./usr/sbin/update-passwd", data: "ELF", mode: 0o755},
	})
	add("libfoo1", "same", map[string]string{"triggers": "activate-noawait ldconfig\n", "md5sums": "x  lib/libfoo.so.1\n"}, []entry{
		{name: "./", dir: true, mode: 0o755},
		{name: "./lib/", dir: true, mode: 0o755},
		{name: "./lib/aarch64-linux-gnu/", dir: true, mode: 0o755},
		{name: "./lib/aarch64-linux-gnu/libfoo.so.1", data: "lib", mode: 0o644},
	})
	add("daemon", "", map[string]string{"conffiles": "/etc/daemon.conf\n", "triggers": "interest-noawait /usr/share/daemon\ninterest ldconfig\n"}, []entry{
		{name: "./", dir: true, mode: 0o755},
		{name: "./bin/", dir: true, mode: 0o755},
		{name: "./bin/daemon", data: "ELF", mode: 0o4750, uid: 7},
		{name: "./etc/", dir: true, mode: 0o755},
		{name: "./etc/daemon.conf", data: "key=value\n", mode: 0o640},
		{name: "./sbin/", dir: true, mode: 0o755},
		{name: "./sbin/daemond", link: "/bin/daemon"},
	})
	return out
}

func readTree(t *testing.T, tr *fstree.Tree, p string) string {
	t.Helper()
	n, ok := tr.Lookup(p)
	if !ok {
		t.Fatalf("%s not in the tree", p)
	}
	b, err := fstree.ReadAll(n.Content)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestBuild(t *testing.T) {
	debs := fakeDebs(t)
	tr, err := Build(debs, Options{Suite: "bookworm", Epoch: time.Unix(0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	// merged /usr: the symlinks stay and files land under usr/.
	for _, d := range []string{"bin", "sbin", "lib"} {
		n, ok := tr.Lookup(d)
		if !ok || n.Type() != fstree.ModeSymlink || n.Target != "usr/"+d {
			t.Errorf("%s is not a symlink to usr/%s: %+v", d, d, n)
		}
	}
	n, ok := tr.Lookup("usr/bin/daemon")
	if !ok || n.Mode&fstree.ModePerm != 0o4750 || n.Uid != 7 || n.Gid != 7 {
		t.Errorf("usr/bin/daemon: %+v, want mode 4750 owner 7:7", n)
	}
	if _, ok := tr.Lookup("usr/lib/aarch64-linux-gnu/libfoo.so.1"); !ok {
		t.Error("libfoo.so.1 not under usr/lib")
	}
	// dpkg database.
	status := readTree(t, tr, "var/lib/dpkg/status")
	sum := md5.Sum([]byte("key=value\n"))
	for _, want := range []string{
		"Package: base-passwd\nStatus: install ok unpacked\nVersion: 1.0-1\n",
		"Package: daemon\nStatus: install ok unpacked\n",
		"Description: test\n multi-line\nConffiles:\n /etc/daemon.conf " + hex.EncodeToString(sum[:]) + "\n",
	} {
		if !strings.Contains(status, want) {
			t.Errorf("status lacks %q:\n%s", want, status)
		}
	}
	if strings.Index(status, "Package: base-passwd") > strings.Index(status, "Package: daemon") {
		t.Error("status is not sorted by package")
	}
	if got := readTree(t, tr, "var/lib/dpkg/info/daemon.list"); got != "/.\n/bin\n/bin/daemon\n/etc\n/etc/daemon.conf\n/sbin\n/sbin/daemond\n" {
		t.Errorf("daemon.list:\n%s", got)
	}
	// Multi-Arch: same packages are name:arch in info/.
	readTree(t, tr, "var/lib/dpkg/info/libfoo1:arm64.md5sums")
	if n, _ := tr.Lookup("var/lib/dpkg/info/base-passwd.preinst"); n == nil || n.Mode&0o111 == 0 {
		t.Error("base-passwd.preinst missing or not executable")
	}
	if got := readTree(t, tr, stateDir+"/preinst-order"); got != "base-passwd\n" {
		t.Errorf("preinst-order = %q", got)
	}
	if got := readTree(t, tr, "var/lib/dpkg/triggers/File"); got != "/usr/share/daemon daemon/noawait\n" {
		t.Errorf("triggers/File = %q", got)
	}
	if got := readTree(t, tr, "var/lib/dpkg/triggers/ldconfig"); got != "daemon\n" {
		t.Errorf("triggers/ldconfig = %q", got)
	}
	if n, _ := tr.Lookup(HookPath); n == nil || n.Mode&0o111 == 0 {
		t.Error("no executable first-boot hook")
	}
	if got := readTree(t, tr, "etc/apt/sources.list"); !strings.Contains(got, "debian bookworm main") || !strings.Contains(got, "bookworm-security main") {
		t.Errorf("sources.list:\n%s", got)
	}
	if got := readTree(t, tr, "etc/modules-load.d/mkimage-lxcfs.conf"); !strings.Contains(got, "\nfuse\n") {
		t.Errorf("modules-load.d for lxcfs:\n%s", got)
	}
	if err := tr.Validate(); err != nil {
		t.Error(err)
	}
}

// TestBuildProgress: each package is announced before it is unpacked,
// and the count ends at the total.
func TestBuildProgress(t *testing.T) {
	debs := fakeDebs(t)
	var got []string
	_, err := Build(debs, Options{Epoch: time.Unix(0, 0), Progress: func(done, total int, name string) {
		got = append(got, fmt.Sprintf("%d/%d %s", done, total, name))
	}})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i, d := range debs {
		want = append(want, fmt.Sprintf("%d/%d %s", i, len(debs), d.Pkg.Name))
	}
	want = append(want, fmt.Sprintf("%d/%d ", len(debs), len(debs)))
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("progress:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestBuildBadDebs(t *testing.T) {
	for _, c := range []struct {
		name   string
		break_ func(t *testing.T, d *Deb)
		want   []string
	}{
		{"corrupt file", func(t *testing.T, d *Deb) {
			b, _ := os.ReadFile(d.Path)
			b[len(b)-10] ^= 0xff
			writeFile(t, d.Path, b)
		}, []string{"package daemon 1.0-1", "sha256", "the index says"}},
		{"index sha256 differs", func(t *testing.T, d *Deb) { d.Pkg.SHA256 = strings.Repeat("0", 64) }, []string{"package daemon 1.0-1", "corrupt or replaced"}},
		{"other package in the file", func(t *testing.T, d *Deb) {
			other, sum := makeDeb(t, t.TempDir(), "intruder", "9", nil, []entry{{name: "./", dir: true, mode: 0o755}})
			d.Path, d.Pkg.SHA256 = other, sum
		}, []string{"package daemon 1.0-1", "holds intruder 9 instead"}},
		{"not a deb", func(t *testing.T, d *Deb) {
			writeFile(t, d.Path, []byte("<html>proxy error</html>"))
			d.Pkg.SHA256 = ""
		}, []string{"package daemon 1.0-1"}},
		{"missing file", func(t *testing.T, d *Deb) { os.Remove(d.Path) }, []string{"package daemon 1.0-1", "no such file"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			debs := fakeDebs(t)
			c.break_(t, &debs[2])
			_, err := Build(debs, Options{Suite: "bookworm"})
			if err == nil {
				t.Fatal("Build succeeded")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestBuildContainer: a container's root names itself and leaves the
// network to LXC: no DHCP for systemd-networkd, no module list.
func TestBuildContainer(t *testing.T) {
	tr, err := Build(fakeDebs(t), Options{Suite: "bookworm", Epoch: time.Unix(0, 0), Container: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if got := readTree(t, tr, "etc/hostname"); got != "web\n" {
		t.Errorf("etc/hostname = %q, want the container's name", got)
	}
	for _, p := range []string{"etc/systemd/network/80-mkimage-dhcp.network", "etc/modules-load.d/mkimage-lxcfs.conf"} {
		if _, ok := tr.Lookup(p); ok {
			t.Errorf("a container's root has %s", p)
		}
	}
	if n, _ := tr.Lookup(HookPath); n == nil || n.Mode&0o111 == 0 {
		t.Error("no executable hook")
	}
}
