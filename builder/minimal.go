package builder

import (
	"context"
	"fmt"
	"path"

	"github.com/mkimage/mkimage/internal/build/deb"
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
