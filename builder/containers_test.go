package builder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/build/apt"
	"github.com/mkimage/mkimage/internal/build/btrfs"
	"github.com/mkimage/mkimage/internal/build/debroot"
	"github.com/mkimage/mkimage/internal/build/ocirootfs/ocitest"
	"github.com/mkimage/mkimage/internal/cachedir"
	"github.com/mkimage/mkimage/internal/cluster"
	"github.com/mkimage/mkimage/internal/cluster/plan"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/testenv"
	"github.com/mkimage/mkimage/internal/update/registry"
	"github.com/mkimage/mkimage/internal/update/registry/registrytest"
)

// memDisk is an io.WriterAt in memory.
type memDisk struct{ b []byte }

func (m *memDisk) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	return copy(m.b[off:], p), nil
}

// TestConfigContainers: a cluster config whose containers name an image
// in a registry (Debian's, on loopback) puts each under var/lib/lxc of
// the root with its config, for every node; a second build takes the
// blobs from the cache and writes the same btrfs bytes. A container
// whose image cannot be pulled fails the build naming file:line.
func TestConfigContainers(t *testing.T) {
	// The registry wants a login, which the build finds in a Docker
	// config as `mkimage update push` does.
	reg := registrytest.Start(t, registrytest.Options{Users: []string{registrytest.HTPasswd}})
	ref, err := registry.ParseRef(reg.Host() + "/apps/web:v1")
	if err != nil {
		t.Fatal(err)
	}
	login := func(string) (string, string, error) { return registrytest.User, registrytest.Password, nil }
	ocitest.Push(t, registry.New(login, nil, false), ref)
	node := func(name string, n int) string {
		return fmt.Sprintf("[[node]]\nname = %q\nmac = \"00:1e:06:00:00:%02d\"\nip = \"192.168.142.%d\"\nrole = \"worker\"\n", name, n, 10+n)
	}
	src := "[cluster]\nname = \"t\"\n[network]\nsubnet = \"192.168.142.0/24\"\n" + node("a", 1) + node("b", 2) +
		"[lxc]\nbridge = \"lxcbr0\"\naddress = \"10.0.3.1/24\"\n" +
		"[[lxc.container]]\nname = \"web\"\nnode = \"a\"\nip = \"10.0.3.2\"\nrootfs = \"oci:" + ref.String() + "\"\n" +
		"[[lxc.container]]\nname = \"web2\"\nnode = \"b\"\nip = \"10.0.3.3\"\nrootfs = \"oci:" + ref.String() + "\"\n" +
		"[[lxc.container]]\nname = \"hand\"\nnode = \"b\"\nip = \"10.0.3.4\"\n"
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	docker := filepath.Join(dir, "docker.json")
	auth := base64.StdEncoding.EncodeToString([]byte(registrytest.User + ":" + registrytest.Password))
	if err := os.WriteFile(docker, []byte(`{"auths":{"`+reg.Host()+`":{"auth":"`+auth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	epoch := time.Unix(1700000000, 0)
	o := &Options{Config: cfg, CacheDir: filepath.Join(dir, "cache"), Epoch: epoch, Log: io.Discard, DockerConfig: docker}
	build := func() (*inputs, *fstree.Tree, [32]byte) { return buildContainers(t, context.Background(), o) }
	in, root, sum1 := build()
	for _, name := range []string{"web", "web2"} {
		c, ok := root.Lookup("var/lib/lxc/" + name + "/config")
		if !ok {
			t.Fatalf("no var/lib/lxc/%s/config", name)
		}
		b, _ := fstree.ReadAll(c.Content)
		if !bytes.HasPrefix(b, []byte(plan.AutostartMarker+"\n")) || !strings.Contains(string(b), "lxc.rootfs.path = dir:/var/lib/lxc/"+name+"/rootfs\n") {
			t.Errorf("%s config:\n%s", name, b)
		}
		if _, ok := root.Lookup("var/lib/lxc/" + name + "/rootfs/bin/tool"); !ok {
			t.Errorf("%s: no rootfs/bin/tool", name)
		}
		if _, ok := root.Lookup("var/lib/lxc/" + name + "/rootfs/old"); ok {
			t.Errorf("%s: rootfs/old survived its whiteout", name)
		}
	}
	if _, ok := root.Lookup("var/lib/lxc/hand"); ok {
		t.Error("a container without rootfs was placed")
	}
	if n := len(in.list); n != 3 || in.list[1].Kind != "container" || !strings.Contains(in.list[1].Note, "web on node a") {
		t.Errorf("inputs %+v", in.list)
	}

	before := len(reg.Requests("/blobs/"))
	_, _, sum2 := build()
	if n := len(reg.Requests("/blobs/")) - before; n != 0 {
		t.Errorf("second build: %d blob requests, want 0 (cached)", n)
	}
	if sum1 != sum2 {
		t.Error("the same config and image gave different root filesystems")
	}

	// Without the login the registry refuses, and the error says so.
	anon := *o
	anon.DockerConfig = filepath.Join(dir, "none.json")
	os.WriteFile(anon.DockerConfig, []byte(`{}`), 0o600)
	anon.CacheDir = filepath.Join(dir, "cache2")
	if err := in.addContainers(context.Background(), &anon, in.config, fstree.New(epoch)); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("without a login: %v", err)
	}

	// An updatable image has no place for them yet.
	uo := *o
	uo.UpdateKeys = "fleet.pub"
	if err := (&inputs{}).loadConfig(context.Background(), &uo); err == nil || !strings.Contains(err.Error(), cfg+":22: container web: rootfs oci:"+ref.String()+": not supported yet in an updatable image") {
		t.Errorf("updatable: %v", err)
	}

	// An image the registry does not have: the build fails, naming the
	// config's line and the container.
	bad := strings.Replace(src, "apps/web:v1\"\n[[lxc.container]]\nname = \"web2\"", "apps/none:v1\"\n[[lxc.container]]\nname = \"web2\"", 1)
	if err := os.WriteFile(cfg, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	in = &inputs{}
	if err := in.loadConfig(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	err = in.addContainers(context.Background(), o, in.config, fstree.New(epoch))
	if err == nil || !strings.Contains(err.Error(), cfg+":22: container web: rootfs oci:"+reg.Host()+"/apps/none:v1: ") || !strings.Contains(err.Error(), "not found") {
		t.Errorf("missing image: %v", err)
	}
}

// TestDebianContainer: a container whose root is built from Debian
// packages (the real apt cache; fetched there when missing) is placed
// with a config that starts /sbin/init after the hook that configures
// its packages; its root has dpkg, the hook and every package unpacked;
// the packages are in the inputs under the container's name; a second
// build writes the same btrfs bytes; an updatable image refuses it.
func TestDebianContainer(t *testing.T) {
	testenv.Short(t)
	ctx := context.Background()
	cache := cachedir.Root()
	if err := (&apt.Cache{Dir: filepath.Join(cache, "apt"), Arch: "arm64"}).Update(ctx); err != nil {
		testenv.Missing(t, "apt lists: "+err.Error())
	}
	src := "[cluster]\nname = \"t\"\n[network]\nsubnet = \"192.168.142.0/24\"\n" +
		"[[node]]\nname = \"a\"\nmac = \"00:1e:06:00:00:01\"\nip = \"192.168.142.11\"\nrole = \"worker\"\n" +
		"[lxc]\nbridge = \"lxcbr0\"\naddress = \"10.0.3.1/24\"\n" +
		"[[lxc.container]]\nname = \"box\"\nnode = \"a\"\nip = \"10.0.3.2\"\nrootfs = \"debian:bookworm\"\npackages = [\"busybox\"]\n"
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	epoch := time.Unix(1700000000, 0)
	o := &Options{Config: cfg, CacheDir: cache, Epoch: epoch, Log: io.Discard}
	build := func() (*inputs, *fstree.Tree, [32]byte) { return buildContainers(t, ctx, o) }
	in, root, sum1 := build()

	c, ok := root.Lookup("var/lib/lxc/box/config")
	if !ok {
		t.Fatal("no var/lib/lxc/box/config")
	}
	conf, _ := fstree.ReadAll(c.Content)
	if !bytes.HasPrefix(conf, []byte(plan.AutostartMarker+"\n")) {
		t.Errorf("config does not start with the autostart marker:\n%s", conf)
	}
	for _, l := range []string{
		"lxc.include = /usr/share/lxc/config/common.conf",
		"lxc.apparmor.profile = generated",
		"lxc.uts.name = box",
		"lxc.rootfs.path = dir:/var/lib/lxc/box/rootfs",
		"lxc.init.cmd = /sbin/init",
		"lxc.hook.start = /" + debroot.HookPath,
		"lxc.start.auto = 0",
	} {
		if !strings.Contains(string(conf), "\n"+l+"\n") {
			t.Errorf("config lacks %q:\n%s", l, conf)
		}
	}
	rootfs := "var/lib/lxc/box/rootfs/"
	sub := &fstree.Tree{Root: func() *fstree.Inode { n, _ := root.Lookup(rootfs); return n }()}
	if sub.Root == nil {
		t.Fatal("no rootfs")
	}
	if err := checkInit(sub); err != nil {
		t.Error(err)
	}
	for _, p := range []string{"usr/bin/dpkg", debroot.HookPath, "usr/bin/busybox"} {
		if n, ok := sub.Lookup(p); !ok || n.Type() != fstree.ModeRegular || n.Mode&0o111 == 0 {
			t.Errorf("rootfs has no executable %s", p)
		}
	}
	if h, _ := sub.Lookup("etc/hostname"); h == nil {
		t.Error("no etc/hostname")
	} else if b, _ := fstree.ReadAll(h.Content); string(b) != "box\n" {
		t.Errorf("etc/hostname = %q", b)
	}
	st, ok := sub.Lookup("var/lib/dpkg/status")
	if !ok {
		t.Fatal("no dpkg status")
	}
	status, _ := fstree.ReadAll(st.Content)
	for _, p := range []string{"busybox", "dpkg", "systemd-sysv", "base-files"} {
		if !bytes.Contains(status, []byte("Package: "+p+"\nStatus: install ok unpacked\n")) {
			t.Errorf("status has no %s \"install ok unpacked\"", p)
		}
	}
	for _, p := range []string{"linux-image-arm64", "lxc", "openssh-server"} {
		if bytes.Contains(status, []byte("Package: "+p+"\n")) {
			t.Errorf("a container's root has the node package %s", p)
		}
	}
	n := 0
	for _, i := range in.list {
		if i.Kind == "package" && strings.HasSuffix(i.Note, " (container box)") && i.SHA256 != "" {
			n++
		}
	}
	if n < 50 || n != bytes.Count(status, []byte("\nStatus: install ok unpacked\n")) {
		t.Errorf("%d packages of container box in the inputs, status has %d", n, bytes.Count(status, []byte("\nStatus: install ok unpacked\n")))
	}
	t.Logf("container box: %d packages, %.1f MB of file data", n, float64(sub.Stats().DataBytes)/1e6)

	if _, _, sum2 := build(); sum1 != sum2 {
		t.Error("the same config and packages gave different root filesystems")
	}

	uo := *o
	uo.UpdateKeys = "fleet.pub"
	if err := (&inputs{}).loadConfig(ctx, &uo); err == nil || !strings.Contains(err.Error(), cfg+":17: container box: rootfs debian:bookworm: not supported yet in an updatable image") {
		t.Errorf("updatable: %v", err)
	}
}

// TestContainerSet: a container's Debian root gets the packages of the
// daemons it runs for its node besides its own packages, each once, on
// a small index (no apt cache, no network).
func TestContainerSet(t *testing.T) {
	stanza := func(name, extra string) string {
		return "Package: " + name + "\nVersion: 1\nArchitecture: arm64\n" + extra + "\n"
	}
	ix := debroot.NewIndex()
	idx := stanza("base-files", "Priority: required\nEssential: yes\n") + stanza("usr-is-merged", "") +
		stanza("libc6", "") + stanza("systemd-sysv", "") + stanza("curl", "Depends: libc6\n") +
		stanza("haproxy", "Depends: libc6\n") + stanza("i2pd", "Depends: libc6\n") + stanza("nginx", "")
	if err := ix.Add("fake_Packages", strings.NewReader(idx)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name           string
		packages, runs []string
		want           string // the set's names, sorted
	}{
		{"packages only", []string{"curl"}, nil, "base-files curl libc6 systemd-sysv usr-is-merged"},
		{"runs only", nil, []string{"haproxy", "i2pd"}, "base-files haproxy i2pd libc6 systemd-sysv usr-is-merged"},
		{"both, overlapping", []string{"haproxy", "curl"}, []string{"i2pd", "haproxy"}, "base-files curl haproxy i2pd libc6 systemd-sysv usr-is-merged"},
	} {
		pkgs, err := containerSet(ix, "arm64", cluster.Container{Name: "edge", Packages: tc.packages, Runs: tc.runs})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var names []string
		for _, p := range pkgs {
			names = append(names, p.Name)
		}
		slices.Sort(names)
		if got := strings.Join(names, " "); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestCheckInit: /sbin/init must end, through its symlinks, at an
// executable file.
func TestCheckInit(t *testing.T) {
	epoch := time.Unix(0, 0)
	for _, tc := range []struct {
		name string
		put  map[string]*fstree.Inode
		ok   bool
	}{
		{"systemd-sysv", map[string]*fstree.Inode{
			"usr/lib/systemd/systemd": fstree.NewFile(0o755, []byte("ELF"), epoch),
			"usr/sbin/init":           fstree.NewSymlink("/lib/systemd/systemd", epoch),
		}, true},
		{"none", nil, false},
		{"dangling", map[string]*fstree.Inode{"usr/sbin/init": fstree.NewSymlink("/lib/systemd/systemd", epoch)}, false},
		{"not executable", map[string]*fstree.Inode{"usr/sbin/init": fstree.NewFile(0o644, []byte("#!/bin/sh\n"), epoch)}, false},
		{"a directory", map[string]*fstree.Inode{"usr/sbin/init": fstree.NewDir(0o755, epoch)}, false},
	} {
		tr := fstree.New(epoch)
		for _, d := range []string{"usr/sbin", "usr/lib/systemd"} {
			tr.MkdirAll(d, epoch)
		}
		for _, l := range []string{"sbin", "lib"} {
			tr.Put(l, fstree.NewSymlink("usr/"+l, epoch))
		}
		for p, n := range tc.put {
			if err := tr.Put(p, n); err != nil {
				t.Fatal(err)
			}
		}
		if err := checkInit(tr); (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok %v", tc.name, err, tc.ok)
		} else if err != nil && !strings.Contains(err.Error(), "no executable /sbin/init") {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// buildContainers places the containers of o's cluster config in an empty
// root and returns the inputs, the root and the sha256 of its btrfs image
// (two builds must agree). A container root whose packages cannot be
// fetched skips the test.
func buildContainers(t *testing.T, ctx context.Context, o *Options) (*inputs, *fstree.Tree, [32]byte) {
	t.Helper()
	in := &inputs{}
	if err := in.loadConfig(ctx, o); err != nil {
		t.Fatal(err)
	}
	root := fstree.New(o.Epoch)
	if err := in.addContainers(ctx, o, in.config, root); err != nil {
		if strings.Contains(err.Error(), "apt-get") {
			testenv.Missing(t, "fetching the container's packages: "+err.Error())
		}
		t.Fatal(err)
	}
	bo := RootFS(o.Epoch)
	bo.Seed = []byte("containers")
	var disk memDisk
	if _, err := btrfs.Write(&disk, root, bo); err != nil {
		t.Fatal(err)
	}
	return in, root, sha256.Sum256(disk.b)
}
