package ocirootfs

import (
	"bufio"
	"bytes"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/cluster/plan"
	"github.com/mkimage/mkimage/internal/fstree"
)

// LXCDir is where Debian's LXC keeps containers (a subvolume of every
// node's root, see builder.rootSubvolumes).
const LXCDir = "var/lib/lxc"

// Line is one "key = value" line of an LXC config.
type Line struct{ Key, Value string }

// ContainerConfig is the LXC config of a container the build places in
// the image (Place), whatever its root is made from: plan.AutostartMarker,
// a comment saying where the root comes from (about), its name, its root,
// Debian's common.conf, LXC's generated AppArmor profile (what lxc-create
// writes from Debian's default.conf; the node set carries
// apparmor_parser to load it), then lines (how it starts), then
// lxc.start.auto = 0. Autostart and network lines are nodeinit's to
// write on the container's own node (policy.pinContainer), the image
// being the same for every node. debian.common.conf is not included: it
// is lxc-templates', which the node set leaves out, and LXC refuses a
// config whose include is missing.
func ContainerConfig(name, about string, lines []Line) ([]byte, error) {
	var b bytes.Buffer
	line := func(k, v string) error {
		if strings.ContainsAny(v, "\n\r\x00") {
			return fmt.Errorf("%s: %q has a line break or NUL, which an LXC config cannot hold", k, v)
		}
		fmt.Fprintf(&b, "%s = %s\n", k, v)
		return nil
	}
	if strings.ContainsAny(about, "\n\r\x00") {
		return nil, fmt.Errorf("container %s: %q has a line break or NUL, which an LXC config cannot hold", name, about)
	}
	b.WriteString(plan.AutostartMarker + "\n")
	fmt.Fprintf(&b, "# container %s from %s\n", name, about)
	all := append([]Line{
		{"lxc.include", "/usr/share/lxc/config/common.conf"},
		{"lxc.apparmor.profile", "generated"},
		{"lxc.uts.name", name},
		{"lxc.rootfs.path", "dir:/" + path.Join(LXCDir, name, "rootfs")},
	}, lines...)
	for _, l := range append(all, Line{"lxc.start.auto", "0"}) {
		if err := line(l.Key, l.Value); err != nil {
			return nil, err
		}
	}
	return b.Bytes(), nil
}

// LXCConfig is the ContainerConfig of a container pulled from an image:
// the image's Entrypoint and Cmd as init command with its working
// directory, environment and user. rootfs resolves a user name.
func LXCConfig(name, source string, img *Image, rootfs *fstree.Tree) ([]byte, error) {
	c := img.Config.Config
	var lines []Line
	argv := append(append([]string(nil), c.Entrypoint...), c.Cmd...)
	if len(argv) == 0 {
		return nil, fmt.Errorf("the image has no Entrypoint or Cmd: nothing to run as the container's init")
	}
	cmd, err := initCmd(argv)
	if err != nil {
		return nil, err
	}
	lines = append(lines, Line{"lxc.init.cmd", cmd})
	if c.WorkingDir != "" {
		if !path.IsAbs(c.WorkingDir) || strings.ContainsAny(c.WorkingDir, " \t") {
			return nil, fmt.Errorf("image WorkingDir %q: want an absolute path without spaces", c.WorkingDir)
		}
		lines = append(lines, Line{"lxc.init.cwd", path.Clean(c.WorkingDir)})
	}
	if c.User != "" {
		uid, gid, err := user(c.User, rootfs)
		if err != nil {
			return nil, fmt.Errorf("image User %q: %w", c.User, err)
		}
		lines = append(lines, Line{"lxc.init.uid", strconv.FormatUint(uint64(uid), 10)},
			Line{"lxc.init.gid", strconv.FormatUint(uint64(gid), 10)})
	}
	for _, e := range c.Env {
		k, _, ok := strings.Cut(e, "=")
		// LXC trims a value's surrounding blanks; a value that has
		// them would reach the container changed.
		if !ok || k == "" || strings.ContainsAny(k, " \t") || strings.TrimSpace(e) != e {
			return nil, fmt.Errorf("image Env %q: want NAME=value without surrounding blanks", e)
		}
		lines = append(lines, Line{"lxc.environment", e})
	}
	return ContainerConfig(name, fmt.Sprintf("%s (image %s)", source, img.Digest), lines)
}

// initCmd quotes argv for lxc.init.cmd, which LXC splits at blanks; a
// word that starts with ' or " runs to the same quote, without escapes
// (lxc_string_split_quoted). A word needing quotes and holding both
// quote characters cannot be written.
func initCmd(argv []string) (string, error) {
	words := make([]string, len(argv))
	for i, a := range argv {
		switch {
		case a != "" && !strings.ContainsAny(a, " \t\v\f") && a[0] != '\'' && a[0] != '"':
			words[i] = a
		case !strings.Contains(a, "'"):
			words[i] = "'" + a + "'"
		case !strings.Contains(a, `"`):
			words[i] = `"` + a + `"`
		default:
			return "", fmt.Errorf("init argument %q has blanks and both quote characters, which lxc.init.cmd cannot express", a)
		}
	}
	return strings.Join(words, " "), nil
}

// user resolves the image's User (uid, uid:gid, name or name:group; a
// name through the root's etc/passwd and etc/group).
func user(s string, rootfs *fstree.Tree) (uid, gid uint32, err error) {
	u, g, hasGroup := strings.Cut(s, ":")
	uid, pgid, err := lookup(rootfs, "etc/passwd", u, true)
	if err != nil {
		return 0, 0, err
	}
	gid = pgid
	if hasGroup {
		if gid, _, err = lookup(rootfs, "etc/group", g, false); err != nil {
			return 0, 0, err
		}
	}
	return uid, gid, nil
}

// lookup finds a numeric id or a name in a passwd or group file: the id
// and, for passwd, the primary group. A numeric user not in passwd has
// group 0, as runc gives it.
func lookup(rootfs *fstree.Tree, file, name string, passwd bool) (id, gid uint32, err error) {
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		id = uint32(n)
		if !passwd {
			return id, 0, nil
		}
	}
	var data []byte
	if n, ok := rootfs.Lookup(file); ok && n.Type() == fstree.ModeRegular {
		if data, err = fstree.ReadAll(n.Content); err != nil {
			return 0, 0, err
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 3 || (f[0] != name && f[2] != name) {
			continue
		}
		n, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			continue
		}
		if passwd && len(f) > 3 {
			g, err := strconv.ParseUint(f[3], 10, 32)
			if err == nil {
				return uint32(n), uint32(g), nil
			}
		}
		return uint32(n), 0, nil
	}
	if _, err := strconv.ParseUint(name, 10, 32); err == nil {
		return id, 0, nil
	}
	return 0, 0, fmt.Errorf("%q is not in the image's /%s", name, file)
}

// Place puts the container's root and config into the node's root at
// var/lib/lxc/NAME: the directory 0770 as lxc-create makes it (the
// container's setuid files stay out of other users' reach), its config
// 0640. Missing parents get t.
func Place(root *fstree.Tree, name string, ct *fstree.Tree, config []byte, t time.Time) error {
	dir := path.Join(LXCDir, name)
	if _, err := root.MkdirAll(LXCDir, t); err != nil {
		return err
	}
	if _, ok := root.Lookup(dir); ok {
		return fmt.Errorf("/%s is already in the root", dir)
	}
	d := fstree.NewDir(0o770, t)
	if err := root.Put(dir, d); err != nil {
		return err
	}
	if err := root.Put(path.Join(dir, "rootfs"), ct.Root); err != nil {
		return err
	}
	return root.Put(path.Join(dir, "config"), fstree.NewFile(0o640, config, t))
}
