package builder

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/internal/build/cpio"
	"github.com/mkimage/mkimage/internal/cluster"
	"github.com/mkimage/mkimage/internal/compress"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/node/updater"
)

// TestAddUpdater: an updatable root gets the nodeinit binary of its own
// initramfs under the name u-root's busybox runs it by, the keys, the
// board, and the check at every boot: systemd units on a systemd root
// (checked by systemd-analyze where it is installed), a boot hook on the
// minimal root, nothing that runs it on another root.
func TestAddUpdater(t *testing.T) {
	epoch := time.Unix(1700000000, 0).UTC()
	b, err := boards.Get("qemu-virt")
	if err != nil {
		t.Fatal(err)
	}
	initrdTree := fstree.New(epoch)
	if err := putFile(initrdTree, "bbin/bb", []byte("\x7fELF busybox"), epoch); err != nil {
		t.Fatal(err)
	}
	var cp bytes.Buffer
	if err := cpio.Write(&cp, initrdTree); err != nil {
		t.Fatal(err)
	}
	var zst bytes.Buffer
	w, err := compress.NewWriter(&zst, compress.Zstd)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(cp.Bytes())
	w.Close()

	for _, tt := range []struct {
		name, rootfs string
		systemd      bool
		want, absent []string
	}{
		{"systemd", "debian", true,
			[]string{"lib/systemd/system/" + checkService, "lib/systemd/system/" + updateTimer, "lib/systemd/system/" + updateService,
				"etc/systemd/system/multi-user.target.wants/" + checkService, "etc/systemd/system/timers.target.wants/" + updateTimer,
				"usr/lib/mkimage/health.d/50-system-running"},
			[]string{"etc/boot.d/90-mkimage-check"}},
		{"minimal", "minimal", false, []string{"etc/boot.d/90-mkimage-check"}, []string{"lib/systemd/system/" + checkService}},
		{"other", "/some/dir", false, nil, []string{"etc/boot.d/90-mkimage-check", "lib/systemd/system/" + checkService}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := fstree.New(epoch)
			if tt.systemd {
				putFile(root, "lib/systemd/systemd", []byte("systemd"), epoch)
			}
			in := &inputs{board: b, root: root, initrd: zst.Bytes(), updateKeys: []byte("mkimage-ed25519-public AAAA k\n")}
			o := &Options{Epoch: epoch, Rootfs: tt.rootfs, Log: io.Discard, ChannelURL: "http://build-host:8080/channel.json"}
			if err := in.addUpdater(o); err != nil {
				t.Fatal(err)
			}
			for p, want := range map[string]string{updater.KeysFile: "mkimage-ed25519-public AAAA k\n", updater.BoardFile: "qemu-virt\n", updaterBinary: "\x7fELF busybox",
				updater.ChannelURLFile: "http://build-host:8080/channel.json\n"} {
				n, ok := root.Lookup(p)
				if !ok || n.Type() != fstree.ModeRegular {
					t.Errorf("%s missing", p)
					continue
				}
				if got := fileData(t, n); got != want {
					t.Errorf("%s = %q, want %q", p, got, want)
				}
			}
			if n, ok := root.Lookup(updaterBinary); ok && n.Mode&0o111 == 0 {
				t.Errorf("%s is not executable: %o", updaterBinary, n.Mode)
			}
			if n, ok := root.Lookup(updater.BinaryPath); !ok || n.Target != "../../usr/lib/mkimage/bb" {
				t.Errorf("%s: %+v, want a link to ../../usr/lib/mkimage/bb", updater.BinaryPath, n)
			}
			for _, p := range tt.want {
				if _, ok := root.Lookup(p); !ok {
					t.Errorf("%s missing", p)
				}
			}
			for _, p := range tt.absent {
				if _, ok := root.Lookup(p); ok {
					t.Errorf("%s present", p)
				}
			}
			if tt.systemd {
				verifyUnits(t, root)
			}
			if warned := len(in.warnings) > 0; warned != (tt.name == "other") {
				t.Errorf("warnings %q", in.warnings)
			}
		})
	}

	// Without update keys the root is left alone.
	root := fstree.New(epoch)
	if err := (&inputs{board: b, root: root}).addUpdater(&Options{Epoch: epoch}); err != nil || len(root.Root.Children) != 0 {
		t.Errorf("not updatable: %v, root %v", err, root.Root.Children)
	}
	// A backup target or containers need nodeinit in the root, and
	// nothing else; a config with neither, no nodeinit.
	const base = "[cluster]\nname = \"t\"\n[network]\nsubnet = \"10.0.0.0/24\"\n"
	for _, tc := range []struct {
		name, config string
		want         bool
	}{
		{"backup target", base + "[backup]\nschedule = \"daily\"\nkeep = 3\n[backup.target]\nhost = \"b@10.0.0.2\"\ndir = \"/srv/b\"\nhost_keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB\"]\n", true},
		{"containers", base + "[[node]]\nname = \"n1\"\nrole = \"worker\"\nmac = \"02:00:00:00:00:01\"\nip = \"10.0.0.2\"\n[lxc]\nbridge = \"lxcbr0\"\naddress = \"10.0.3.1/24\"\n[[lxc.container]]\nname = \"web\"\nnode = \"n1\"\nip = \"10.0.3.10\"\n", true},
		{"neither", base + "[backup]\nschedule = \"daily\"\nkeep = 3\n", false},
	} {
		cfg, err := cluster.Parse("c.toml", []byte(tc.config))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		root = fstree.New(epoch)
		if err := (&inputs{board: b, root: root, initrd: zst.Bytes(), config: cfg}).addUpdater(&Options{Epoch: epoch}); err != nil {
			t.Fatal(err)
		}
		n, ok := root.Lookup(updater.BinaryPath)
		if ok != tc.want || ok && n.Target != "../../usr/lib/mkimage/bb" {
			t.Errorf("%s: %s: %+v (%v), want %v", tc.name, updater.BinaryPath, n, ok, tc.want)
		}
		if _, ok := root.Lookup(updater.KeysFile); ok {
			t.Errorf("%s: %s in a root that is not updatable", tc.name, updater.KeysFile)
		}
	}
}

func fileData(t *testing.T, n *fstree.Inode) string {
	t.Helper()
	r, err := n.Content.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(r); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// verifyUnits runs systemd-analyze verify on the update units.
func verifyUnits(t *testing.T, root *fstree.Tree) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Log("no systemd-analyze here: units not verified")
		return
	}
	dir := t.TempDir()
	var paths []string
	for _, name := range []string{checkService, updateService, updateTimer} {
		n, _ := root.Lookup("lib/systemd/system/" + name)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(fileData(t, n)), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	out, err := exec.Command("systemd-analyze", append([]string{"verify", "--man=no"}, paths...)...).CombinedOutput()
	// The units name /usr/sbin/nodeinit, which this host lacks: that
	// complaint is expected; anything else is a broken unit.
	var bad []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" && !strings.Contains(l, updater.BinaryPath) {
			bad = append(bad, l)
		}
	}
	if len(bad) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, strings.Join(bad, "\n"))
	}
}

// TestAddUpdaterMergedUsr: on a root whose /lib is a symlink to usr/lib
// (Debian since bookworm), the systemd units go under usr/lib, where the
// enabling links' /lib/... targets resolve.
func TestAddUpdaterMergedUsr(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	initrd := fstree.New(t0)
	if _, err := initrd.MkdirAll("bbin", t0); err != nil {
		t.Fatal(err)
	}
	if err := initrd.Put(busyboxInInitrd, fstree.NewFile(0o755, []byte("busybox"), t0)); err != nil {
		t.Fatal(err)
	}
	var cp bytes.Buffer
	if err := cpio.Write(&cp, initrd); err != nil {
		t.Fatal(err)
	}
	root := fstree.New(t0)
	for _, d := range []string{"usr/lib/systemd", "usr/sbin"} {
		if _, err := root.MkdirAll(d, t0); err != nil {
			t.Fatal(err)
		}
	}
	if err := root.Put("usr/lib/systemd/systemd", fstree.NewFile(0o755, nil, t0)); err != nil {
		t.Fatal(err)
	}
	if err := root.Put("lib", fstree.NewSymlink("usr/lib", t0)); err != nil {
		t.Fatal(err)
	}
	b, err := boards.Get("qemu-virt")
	if err != nil {
		t.Fatal(err)
	}
	in := &inputs{board: b, root: root, initrd: cp.Bytes(), updateKeys: []byte("key\n")}
	if err := in.addUpdater(&Options{Epoch: t0, Rootfs: "debian", Log: io.Discard}); err != nil {
		t.Fatal(err)
	}
	for name := range systemdUnits {
		if _, ok := root.Lookup("usr/lib/systemd/system/" + name); !ok {
			t.Errorf("usr/lib/systemd/system/%s missing", name)
		}
	}
	if n, ok := root.Lookup("lib"); !ok || n.Type() != fstree.ModeSymlink {
		t.Errorf("/lib is no longer the symlink")
	}
}
