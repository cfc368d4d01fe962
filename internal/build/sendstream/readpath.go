package sendstream

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/mkimage/mkimage/internal/fstree"
)

// specialTypes are the file types each of mknod, mkfifo and mksock makes.
var specialTypes = map[uint16][]uint32{
	cmdMknod: {fstree.ModeChar, fstree.ModeBlock}, cmdMkfifo: {fstree.ModeFIFO}, cmdMksock: {fstree.ModeSocket},
}

// create makes an inode as receive does: a file 0600, a directory 0700,
// owned by root until chown and chmod say otherwise.
func (r *reader) create(cmd uint16) error {
	d := r.dec
	p := d.str(attrPath)
	var n *fstree.Inode
	switch cmd {
	case cmdMkfile:
		n = fstree.NewFile(0o600, nil, noTime)
		r.files[n] = &fileData{}
	case cmdMkdir:
		n = fstree.NewDir(0o700, noTime)
	case cmdSymlink:
		target := d.str(attrPathLink)
		if d.err == nil {
			if err := r.checkTarget(target); err != nil {
				return err
			}
		}
		n = fstree.NewSymlink(target, noTime)
	default:
		mode, rdev := d.u64(attrMode), uint64(0)
		if cmd == cmdMknod {
			rdev = d.u64(attrRdev)
		}
		if d.err != nil {
			return d.err
		}
		if mode > fstree.ModeType|fstree.ModePerm || !slices.Contains(specialTypes[cmd], uint32(mode)&fstree.ModeType) {
			return fmt.Errorf("mode %#o is not one %s makes", mode, cmdName(cmd))
		}
		ma, mi := devNumbers(rdev)
		n = &fstree.Inode{Mode: uint32(mode), Major: ma, Minor: mi, Atime: noTime, Mtime: noTime, Ctime: noTime}
	}
	if d.err != nil {
		return d.err
	}
	if r.inodes++; r.inodes > r.lim.MaxInodes {
		return fmt.Errorf("more than the limit of %d inodes", r.lim.MaxInodes)
	}
	return r.put(p, n)
}

// devNumbers inverts rdev: glibc's major and minor.
func devNumbers(rdev uint64) (major, minor uint32) {
	return uint32(rdev>>8&0xfff | rdev>>32&^0xfff), uint32(rdev&0xff | rdev>>12&^0xff)
}

func (r *reader) checkTarget(target string) error {
	switch {
	case target == "":
		return fmt.Errorf("symlink with an empty target")
	case len(target) > r.lim.MaxPath:
		return fmt.Errorf("symlink target is %d bytes, more than the limit of %d", len(target), r.lim.MaxPath)
	case strings.IndexByte(target, 0) >= 0:
		return fmt.Errorf("symlink target %q holds a NUL byte", target)
	}
	return nil
}

// put gives n the name p, which must not exist yet.
func (r *reader) put(p string, n *fstree.Inode) error {
	dir, name, err := r.parent(p)
	if err != nil {
		return err
	}
	if old, ok := dir.Children[name]; ok {
		return fmt.Errorf("%q exists already (a %s)", "/"+p, fstree.TypeName(old.Mode))
	}
	dir.Children[name] = n
	return nil
}

// link gives a further name to an inode that is not a directory.
func (r *reader) link() error {
	p, target := r.dec.str(attrPath), r.dec.str(attrPathLink)
	if r.dec.err != nil {
		return r.dec.err
	}
	n, err := r.lookup(target)
	if err != nil {
		return fmt.Errorf("link target: %w", err)
	}
	if n.IsDir() {
		return fmt.Errorf("link target %q is a directory", "/"+target)
	}
	return r.put(p, n)
}

// rename moves an entry as rename(2) does: over an entry of the same
// kind (a directory only when empty), never into itself.
func (r *reader) rename() error {
	from, to := r.dec.str(attrPath), r.dec.str(attrPathTo)
	if r.dec.err != nil {
		return r.dec.err
	}
	fromDir, fromName, n, err := r.entry(from)
	if err != nil {
		return err
	}
	toDir, toName, err := r.parent(to)
	if err != nil {
		return fmt.Errorf("new path: %w", err)
	}
	if n.IsDir() && strings.HasPrefix(to, from+"/") {
		return fmt.Errorf("moves a directory into itself, to %q", "/"+to)
	}
	if old, ok := toDir.Children[toName]; ok {
		switch {
		case old == n:
			return nil // two names of one inode: rename(2) does nothing
		case old.IsDir() != n.IsDir():
			return fmt.Errorf("would replace the %s %q with a %s", fstree.TypeName(old.Mode), "/"+to, fstree.TypeName(n.Mode))
		case len(old.Children) > 0:
			return fmt.Errorf("would replace %q, a directory that is not empty", "/"+to)
		}
	}
	delete(fromDir.Children, fromName)
	toDir.Children[toName] = n
	return nil
}

// remove unlinks a name (unlink) or an empty directory (rmdir).
func (r *reader) remove(cmd uint16) error {
	p := r.dec.str(attrPath)
	if r.dec.err != nil {
		return r.dec.err
	}
	dir, name, n, err := r.entry(p)
	switch {
	case err != nil:
		return err
	case cmd == cmdUnlink && n.IsDir():
		return fmt.Errorf("%q is a directory", "/"+p)
	case cmd == cmdRmdir && !n.IsDir():
		return fmt.Errorf("%q is a %s, not a directory", "/"+p, fstree.TypeName(n.Mode))
	case cmd == cmdRmdir && len(n.Children) > 0:
		return fmt.Errorf("%q is not empty", "/"+p)
	}
	delete(dir.Children, name)
	return nil
}

// entry returns the directory holding p, p's name there, and the inode,
// which must exist.
func (r *reader) entry(p string) (*fstree.Inode, string, *fstree.Inode, error) {
	dir, name, err := r.parent(p)
	if err != nil {
		return nil, "", nil, err
	}
	n, ok := dir.Children[name]
	if !ok {
		return nil, "", nil, fmt.Errorf("%q does not exist", "/"+p)
	}
	return dir, name, n, nil
}

// checkPath refuses a path receive would resolve outside the subvolume
// ("..", absolute), one that is not canonical (empty or "." names), and
// one over the limits. "" is the subvolume's top directory.
func (r *reader) checkPath(p string) error {
	if len(p) > r.lim.MaxPath {
		return fmt.Errorf("path of %d bytes, more than the limit of %d", len(p), r.lim.MaxPath)
	}
	if p == "" {
		return nil
	}
	if strings.HasPrefix(p, "/") {
		return fmt.Errorf("path %q is absolute: it leaves the subvolume", p)
	}
	depth := 0
	for rest := p; rest != ""; depth++ {
		var name string
		name, rest, _ = strings.Cut(rest, "/")
		switch {
		case name == "..":
			return fmt.Errorf("path %q leaves the subvolume (..)", p)
		case name == "" || name == ".":
			return fmt.Errorf("path %q has an empty or . name", p)
		case len(name) > 255 || strings.IndexByte(name, 0) >= 0:
			return fmt.Errorf("path %q has a name longer than 255 bytes or with a NUL byte", p)
		}
	}
	if strings.HasSuffix(p, "/") {
		return fmt.Errorf("path %q ends in /", p)
	}
	if depth > r.lim.MaxDepth {
		return fmt.Errorf("path %q is %d names deep, more than the limit of %d", p, depth, r.lim.MaxDepth)
	}
	return nil
}

// lookup returns the inode at p, through directories only: receive
// would follow a symlink, maybe out of the subvolume.
func (r *reader) lookup(p string) (*fstree.Inode, error) {
	if err := r.checkPath(p); err != nil {
		return nil, err
	}
	n := r.tree.Root
	for start := 0; start < len(p); {
		end := strings.IndexByte(p[start:], '/')
		if end < 0 {
			end = len(p)
		} else {
			end += start
		}
		if !n.IsDir() { // never the top, so start > 0
			return nil, fmt.Errorf("%q is a %s, not a directory", "/"+p[:start-1], fstree.TypeName(n.Mode))
		}
		child, ok := n.Children[p[start:end]]
		if !ok {
			return nil, fmt.Errorf("%q does not exist", "/"+p[:end])
		}
		n, start = child, end+1
	}
	return n, nil
}

// parent returns the directory an entry p goes in, and its name.
func (r *reader) parent(p string) (*fstree.Inode, string, error) {
	if err := r.checkPath(p); err != nil {
		return nil, "", err
	}
	if p == "" {
		return nil, "", fmt.Errorf("the subvolume's top directory cannot be made, moved or removed")
	}
	dir, name := path.Split(p)
	dir = strings.TrimSuffix(dir, "/")
	n, err := r.lookup(dir)
	if err != nil {
		return nil, "", err
	}
	if !n.IsDir() {
		return nil, "", fmt.Errorf("%q is a %s, not a directory", "/"+dir, fstree.TypeName(n.Mode))
	}
	return n, name, nil
}
