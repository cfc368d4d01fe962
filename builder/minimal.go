package builder

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/mkimage/mkimage/internal/build/deb"
	"github.com/mkimage/mkimage/internal/build/debroot"
	"github.com/mkimage/mkimage/internal/build/rootfs"
	"github.com/mkimage/mkimage/internal/filehash"
	"github.com/mkimage/mkimage/internal/fstree"
)

// busyboxApplets are linked to /bin/busybox in the minimal root. The
// arm64 binary cannot be asked for its list on the build host, so this is
// the set a node's rescue and test scripts use; all are in Debian's
// busybox-static.
var busyboxApplets = map[string][]string{
	"bin": {"sh", "ash", "cat", "chmod", "chown", "cp", "date", "dd", "df", "dmesg", "echo", "false",
		"grep", "hostname", "kill", "ln", "ls", "mkdir", "mknod", "mount", "mv", "ping", "ps", "pwd",
		"rm", "rmdir", "sed", "sleep", "stat", "sync", "touch", "true", "umount", "uname", "vi"},
	"sbin": {"init", "halt", "poweroff", "reboot", "ip", "ifconfig", "route", "modprobe", "insmod",
		"lsmod", "sysctl", "udhcpc", "blkid", "switch_root", "watchdog"},
	"usr/bin": {"awk", "basename", "cut", "dirname", "du", "env", "find", "free", "head", "id",
		"md5sum", "sha256sum", "sort", "tail", "tee", "test", "tr", "uptime", "wc", "wget", "xargs", "[", "[["},
}

const inittab = `# busybox init: rcS once, then a shell on the console.
::sysinit:/etc/init.d/rcS
::askfirst:-/bin/sh
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/sync
::shutdown:/bin/umount -a -r
`

// rcS runs the scripts in /etc/boot.d in name order; images add their own
// hooks there (tests use it to report what the node sees).
const rcS = `#!/bin/sh
# Minimal root's start script (mkimage). nodeinit already mounted /proc,
# /sys, /dev and /run.
mount -o remount,rw / 2>/dev/null
[ -r /etc/hostname ] && hostname -F /etc/hostname
echo "rcS: minimal root up: $(uname -r)"
# An updatable image's nodeinit hands the hardware watchdog on armed
# (nodeinit.watchdog=SECONDS): busybox feeds it from here on, or the
# board resets and U-Boot's counting script falls back.
wd=$(awk '{for (i = 1; i <= NF; i++) if ($i ~ /^nodeinit[.]watchdog=[0-9]+$/) {sub(/.*=/, "", $i); print $i}}' /proc/cmdline)
if [ -n "$wd" ] && [ "$wd" -gt 0 ] && [ -c /dev/watchdog ]; then
	watchdog -T "$wd" -t $(((wd + 2) / 3)) /dev/watchdog &&
		echo "rcS: watchdog: busybox watchdog feeds /dev/watchdog (timeout ${wd}s)"
fi
for f in /etc/boot.d/*; do
	[ -x "$f" ] && "$f"
done
`

// minimalRoot is the default root: Debian's busybox-static for arm64
// with a busybox init, users and the mount points nodeinit needs.
func minimalRoot(ctx context.Context, o *Options, in *inputs) (*fstree.Tree, error) {
	debPath, err := fetchPackage(ctx, o, "busybox-static")
	if err != nil {
		return nil, err
	}
	pkg, err := deb.Open(debPath)
	if err != nil {
		return nil, err
	}
	h, err := filehash.SHA256(debPath)
	if err != nil {
		return nil, err
	}
	in.add("package", debPath, h, "busybox-static "+pkg.Control().Version+" (minimal root)")
	t := o.Epoch
	root := fstree.New(t)
	bbTree, err := rootfs.FromDeb(pkg, rootfs.TarOptions{Epoch: t})
	if err != nil {
		return nil, err
	}
	bb, ok := bbTree.Lookup("bin/busybox")
	if !ok {
		return nil, fmt.Errorf("%s: no bin/busybox in the package", debPath)
	}
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc/init.d", "etc/boot.d", "root", "var/log", "var/run", "lib"} {
		if _, err := root.MkdirAll(d, t); err != nil {
			return nil, err
		}
	}
	if err := root.Put("bin/busybox", bb); err != nil {
		return nil, err
	}
	for dir, names := range busyboxApplets {
		target := path.Join(upTo(dir), "bin/busybox")
		for _, n := range names {
			if err := root.Put(path.Join(dir, n), fstree.NewSymlink(target, t)); err != nil {
				return nil, err
			}
		}
	}
	if updatable(o) {
		if err := addDebianTools(ctx, o, in, root, updateTools...); err != nil {
			return nil, err
		}
	}
	tmp, _ := root.MkdirAll("tmp", t)
	tmp.Mode = fstree.ModeDir | 0o1777
	rootHome, _ := root.Lookup("root")
	rootHome.Mode = fstree.ModeDir | 0o700
	files := []struct {
		path string
		perm uint32
		data string
	}{
		{"etc/inittab", 0o644, inittab},
		{"etc/init.d/rcS", 0o755, rcS},
		{"etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"},
		{"etc/group", 0o644, "root:x:0:\nnogroup:x:65534:\n"},
		{"etc/shadow", 0o600, "root:*:1::::::\nnobody:*:1::::::\n"},
		{"etc/hostname", 0o644, "node\n"},
		{"etc/os-release", 0o644, "NAME=\"mkimage minimal\"\nID=mkimage-minimal\nPRETTY_NAME=\"mkimage minimal root (busybox)\"\n"},
	}
	for _, f := range files {
		if err := root.Put(f.path, fstree.NewFile(f.perm, []byte(f.data), t)); err != nil {
			return nil, err
		}
	}
	return root, nil
}

// updateTools are the Debian packages an updatable minimal root carries
// besides busybox: the node installs an update bundle's root with `btrfs
// receive` (internal/node/apply).
var updateTools = []string{"btrfs-progs"}

// toolFilters leave out of the update tools what --slim leaves out, and
// glibc's iconv modules (gconv, two thirds of the packages' size): the
// tools convert no character sets.
var toolFilters = append(debroot.SlimFilters[:len(debroot.SlimFilters):len(debroot.SlimFilters)],
	debroot.PathFilter{Pattern: "/usr/lib/*/gconv/*"})

// addDebianTools adds to root the data of Debian's packages names and of
// their Depends and Pre-Depends, resolved from the apt lists a Debian
// root is built from, without docs or man pages (toolFilters). No
// maintainer script runs: programs and the shared libraries they link
// need none. A package's file replaces a busybox applet link at its
// path, as the real program is what was asked for. The root keeps its
// own lib/ (no merged /usr): the bookworm packages put the dynamic loader
// and libraries in /lib and /usr/lib as ld.so looks for them.
func addDebianTools(ctx context.Context, o *Options, in *inputs, root *fstree.Tree, names ...string) error {
	c := aptCache(o)
	ix, err := debianIndex(ctx, c, DefaultSuite)
	if err != nil {
		return err
	}
	pkgs, err := debroot.Resolve(ix, c.Arch, names...)
	if err != nil {
		return err
	}
	debs, err := FetchDebs(ctx, c, pkgs)
	if err != nil {
		return err
	}
	tools := fstree.New(o.Epoch)
	opt := rootfs.TarOptions{Epoch: o.Epoch, FollowDirSymlinks: true, Keep: debroot.Keep(toolFilters)}
	for _, d := range debs {
		pkg, err := debroot.Check(d)
		if err != nil {
			return err
		}
		if err := rootfs.AddDeb(tools, pkg, opt); err != nil {
			return fmt.Errorf("package %s %s: %w", d.Pkg.Name, d.Pkg.Version, err)
		}
		in.add("package", d.Path, d.Pkg.SHA256, d.Pkg.Name+" "+d.Pkg.Version+" (minimal root)")
	}
	st := tools.Stats()
	logf(o, "minimal root: %s and what it needs: %d packages, %.1f MB of file data", strings.Join(names, ", "), len(debs), float64(st.DataBytes)/1e6)
	root.Add(tools)
	return nil
}

// upTo returns the relative path from dir back to the root ("usr/bin" →
// "../..").
func upTo(dir string) string {
	n := 1
	for _, c := range dir {
		if c == '/' {
			n++
		}
	}
	p := ".."
	for i := 1; i < n; i++ {
		p += "/.."
	}
	return p
}
