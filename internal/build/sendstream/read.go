package sendstream

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/fstree"
)

// Limits bound what ReadFull accepts, so that a hostile stream is refused
// in bounded memory and time. A field left zero takes its DefaultLimits
// value.
type Limits struct {
	// MaxBytes bounds the stream's length plus the bytes its clone
	// commands copy: together, the most file data ReadFull holds.
	MaxBytes int64
	// MaxFileSize bounds one file's size, holes included (the
	// incremental writer reads a parent's holes as zeros).
	MaxFileSize int64
	// MaxInodes bounds the inodes of the tree, its top directory
	// included.
	MaxInodes int
	// MaxPath bounds the bytes of every path and symlink target, and
	// MaxDepth the names in a path, wherever renames move them.
	MaxPath  int
	MaxDepth int
	// MaxXattr bounds one xattr value, MaxXattrs the names and values of
	// one inode's xattrs together.
	MaxXattr  int
	MaxXattrs int
}

// DefaultLimits hold a node's root with room to spare: 4 GiB of stream,
// files up to 64 GiB, 4 Mi inodes, paths as receive accepts them (4095
// bytes), 1024 levels deep, xattr values as a stream carries them (64 KiB)
// and 1 MiB of xattrs an inode.
var DefaultLimits = Limits{
	MaxBytes: 4 << 30, MaxFileSize: 64 << 30, MaxInodes: 4 << 20,
	MaxPath: maxPath, MaxDepth: 1024, MaxXattr: 0xffff, MaxXattrs: 1 << 20,
}

func (l Limits) orDefault() Limits {
	d := DefaultLimits
	return Limits{
		MaxBytes: or(l.MaxBytes, d.MaxBytes), MaxFileSize: or(l.MaxFileSize, d.MaxFileSize), MaxInodes: or(l.MaxInodes, d.MaxInodes),
		MaxPath: or(l.MaxPath, d.MaxPath), MaxDepth: or(l.MaxDepth, d.MaxDepth), MaxXattr: or(l.MaxXattr, d.MaxXattr), MaxXattrs: or(l.MaxXattrs, d.MaxXattrs),
	}
}

func or[T int | int64](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// noTime is what an inode's times are until a utimes sets them: the
// epoch, as the writer sends a zero time.
var noTime = time.Unix(0, 0)

// ReadFull reads a full send stream of version 1, as WriteFull or `btrfs
// send` without -p writes it, and returns the tree btrfs receive (run as
// root) makes of it and the subvolume's Name, UUID and CTransid.
//
// Commands read: subvol, mkfile, mkdir, mknod, mkfifo, mksock, symlink,
// link, rename, unlink, rmdir, set_xattr, remove_xattr, write, clone
// (from a file of the same subvolume), truncate, chown, chmod, utimes and
// end. Receive's side effects are kept: chown takes setuid, setgid (with
// group execute) and security.capability from anything but a directory;
// write, clone and truncate take security.capability. Each inode keeps
// the ctime the stream sends, which receive cannot set.
//
// Data a write or clone sends stays data, ranges none sends are holes: a
// file that is one run of data from its start is fstree.Bytes, any other
// *fstree.SparseBytes, so that WriteFull of the tree writes the stream
// again byte for byte. Each file's data must come front to back, as a
// full stream sends it.
func ReadFull(r io.Reader, lim Limits) (*fstree.Tree, Options, error) {
	rd := &reader{
		lim: lim.orDefault(), tree: fstree.New(noTime), inodes: 1,
		files: map[*fstree.Inode]*fileData{}, xattrs: map[*fstree.Inode]int{},
	}
	rd.dec = newDecoder(r, rd.lim.MaxBytes)
	if err := rd.read(); err != nil {
		return nil, Options{}, err
	}
	return rd.tree, rd.opts, nil
}

// reader rebuilds a tree from the commands of one stream.
type reader struct {
	lim     Limits
	dec     *decoder
	tree    *fstree.Tree
	opts    Options
	started bool                        // the subvol command was read
	files   map[*fstree.Inode]*fileData // every regular file's data
	xattrs  map[*fstree.Inode]int       // bytes of each inode's xattrs
	inodes  int                         // made so far
	copied  int64                       // bytes clone commands copied
}

func (r *reader) read() error {
	if err := r.dec.header(); err != nil {
		return err
	}
	for {
		cmd, err := r.dec.next()
		if err == io.EOF {
			return fmt.Errorf("send stream: it ends after %d commands without an end command (cut short?)", r.dec.n-1)
		}
		if err != nil {
			return fmt.Errorf("send stream: command %d at byte %d: %w", r.dec.n, r.dec.start, err)
		}
		err = r.apply(cmd)
		if err == nil {
			err = r.dec.err
		}
		if err != nil {
			where := cmdName(cmd)
			if r.dec.has(attrPath) {
				where += fmt.Sprintf(" %q", "/"+string(r.dec.attrs[attrPath]))
			}
			return fmt.Errorf("send stream: command %d (%s) at byte %d: %w", r.dec.n, where, r.dec.start, err)
		}
		if cmd == cmdEnd {
			break
		}
	}
	if _, err := r.dec.r.ReadByte(); err != io.EOF {
		if err != nil {
			return fmt.Errorf("send stream: after the end command: %w", err)
		}
		return fmt.Errorf("send stream: data after the end command at byte %d (a second subvolume? ReadFull reads one)", r.dec.off)
	}
	return r.finish()
}

// apply carries out one command.
func (r *reader) apply(cmd uint16) error {
	d := r.dec
	switch {
	case cmd == cmdSnapshot:
		return fmt.Errorf("an incremental stream (against parent %x): ReadFull needs a full stream", d.uuid(attrCloneUUID))
	case cmd == cmdSubvol && r.started:
		return fmt.Errorf("a second subvolume: ReadFull reads one")
	case cmd == cmdSubvol:
		r.opts = Options{Name: d.str(attrPath), UUID: d.uuid(attrUUID), CTransid: d.u64(attrCtransid)}
		r.started = true
		if d.err == nil {
			return checkName(r.opts.Name)
		}
		return nil
	case !r.started:
		return fmt.Errorf("before the subvol command")
	}
	switch cmd {
	case cmdMkfile, cmdMkdir, cmdMknod, cmdMkfifo, cmdMksock, cmdSymlink:
		return r.create(cmd)
	case cmdLink:
		return r.link()
	case cmdRename:
		return r.rename()
	case cmdUnlink, cmdRmdir:
		return r.remove(cmd)
	case cmdSetXattr:
		return r.setXattr()
	case cmdRemoveXattr:
		return r.removeXattr()
	case cmdWrite:
		return r.write()
	case cmdClone:
		return r.clone()
	case cmdTruncate:
		return r.truncate()
	case cmdChown:
		return r.chown()
	case cmdChmod:
		return r.chmod()
	case cmdUtimes:
		return r.utimes()
	case cmdEnd:
		return nil
	case cmdUpdateExtent:
		return fmt.Errorf("the stream holds no file data (btrfs send --no-data)")
	}
	return fmt.Errorf("not a command of stream version 1")
}

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
	fromDir, fromName, err := r.parent(from)
	if err != nil {
		return err
	}
	n, ok := fromDir.Children[fromName]
	if !ok {
		return fmt.Errorf("%q does not exist", "/"+from)
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
	dir, name, err := r.parent(p)
	if err != nil {
		return err
	}
	n, ok := dir.Children[name]
	switch {
	case !ok:
		return fmt.Errorf("%q does not exist", "/"+p)
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

func (r *reader) setXattr() error {
	d := r.dec
	p, name, value := d.str(attrPath), d.str(attrXattrName), d.bytes(attrXattrData)
	if d.err != nil {
		return d.err
	}
	n, err := r.lookup(p)
	if err != nil {
		return err
	}
	if name == "" || len(name) > 255 || strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("invalid xattr name %q", name)
	}
	if len(value) > r.lim.MaxXattr {
		return fmt.Errorf("xattr %s: value of %d bytes, more than the limit of %d", name, len(value), r.lim.MaxXattr)
	}
	r.dropXattr(n, name)
	if total := r.xattrs[n] + len(name) + len(value); total > r.lim.MaxXattrs {
		return fmt.Errorf("xattr %s: the inode's xattrs come to %d bytes, more than the limit of %d", name, total, r.lim.MaxXattrs)
	}
	if n.Xattrs == nil {
		n.Xattrs = map[string][]byte{}
	}
	n.Xattrs[name] = bytes.Clone(value)
	r.xattrs[n] += len(name) + len(value)
	return nil
}

func (r *reader) removeXattr() error {
	p, name := r.dec.str(attrPath), r.dec.str(attrXattrName)
	if r.dec.err != nil {
		return r.dec.err
	}
	n, err := r.lookup(p)
	if err != nil {
		return err
	}
	if !r.dropXattr(n, name) {
		return fmt.Errorf("no xattr %q", name)
	}
	return nil
}

// dropXattr removes xattr name of n, if it has it.
func (r *reader) dropXattr(n *fstree.Inode, name string) bool {
	v, ok := n.Xattrs[name]
	if ok {
		delete(n.Xattrs, name)
		r.xattrs[n] -= len(name) + len(v)
	}
	return ok
}

// file returns the regular file at p and its data.
func (r *reader) file(p string) (*fstree.Inode, *fileData, error) {
	n, err := r.lookup(p)
	if err != nil {
		return nil, nil, err
	}
	f, ok := r.files[n]
	if !ok {
		return nil, nil, fmt.Errorf("%q is a %s, not a regular file", "/"+p, fstree.TypeName(n.Mode))
	}
	return n, f, nil
}

func (r *reader) write() error {
	d := r.dec
	p, off, data := d.str(attrPath), d.limit(attrFileOffset, r.lim.MaxFileSize), d.bytes(attrData)
	if d.err != nil {
		return d.err
	}
	n, f, err := r.file(p)
	if err != nil {
		return err
	}
	if off > r.lim.MaxFileSize-int64(len(data)) {
		return fmt.Errorf("%d bytes at offset %d pass the file size limit of %d", len(data), off, r.lim.MaxFileSize)
	}
	if err := f.write(off, data); err != nil {
		return err
	}
	r.dropXattr(n, capability)
	return nil
}

// clone copies a range of a file sent before, as a full `btrfs send`
// does for data two files share.
func (r *reader) clone() error {
	d, max := r.dec, r.lim.MaxFileSize
	p, off, length := d.str(attrPath), d.limit(attrFileOffset, max), d.limit(attrCloneLen, max)
	src, srcOff := d.str(attrClonePath), d.limit(attrCloneOffset, max)
	uuid, ctransid := d.uuid(attrCloneUUID), d.u64(attrCloneCtransid)
	if d.err != nil {
		return d.err
	}
	if uuid != r.opts.UUID || ctransid != r.opts.CTransid {
		return fmt.Errorf("clone from another subvolume (uuid %x, ctransid %d): only clones within the stream's own subvolume are read", uuid, ctransid)
	}
	n, f, err := r.file(p)
	if err != nil {
		return err
	}
	_, sf, err := r.file(src)
	if err != nil {
		return fmt.Errorf("clone source: %w", err)
	}
	switch {
	case srcOff > sf.size-length:
		return fmt.Errorf("clone source %q: %d bytes at offset %d pass its end (%d)", "/"+src, length, srcOff, sf.size)
	case off > max-length:
		return fmt.Errorf("%d bytes at offset %d pass the file size limit of %d", length, off, max)
	case sf == f && srcOff < off+length && off < srcOff+length:
		return fmt.Errorf("clone source range %d+%d overlaps the destination %d+%d", srcOff, length, off, length)
	}
	r.copied += sf.dataIn(srcOff, length)
	if r.dec.off+r.copied > r.lim.MaxBytes {
		return fmt.Errorf("the stream and the data it clones pass the limit of %d bytes", r.lim.MaxBytes)
	}
	if err := f.clone(off, sf, srcOff, length); err != nil {
		return err
	}
	r.dropXattr(n, capability)
	return nil
}

func (r *reader) truncate() error {
	p, size := r.dec.str(attrPath), r.dec.limit(attrSize, r.lim.MaxFileSize)
	if r.dec.err != nil {
		return r.dec.err
	}
	n, f, err := r.file(p)
	if err != nil {
		return err
	}
	f.truncate(size)
	r.dropXattr(n, capability)
	return nil
}

// chown sets the owner; on anything but a directory the kernel drops
// setuid, setgid when group execute is set, and the file capability.
func (r *reader) chown() error {
	d := r.dec
	p, uid, gid := d.str(attrPath), d.u64(attrUid), d.u64(attrGid)
	if d.err != nil {
		return d.err
	}
	if uid > math.MaxUint32 || gid > math.MaxUint32 {
		return fmt.Errorf("owner %d:%d does not fit in 32 bits", uid, gid)
	}
	n, err := r.lookup(p)
	if err != nil {
		return err
	}
	n.Uid, n.Gid = uint32(uid), uint32(gid)
	if !n.IsDir() {
		n.Mode &^= 0o4000
		if n.Mode&0o010 != 0 {
			n.Mode &^= 0o2000
		}
		r.dropXattr(n, capability)
	}
	return nil
}

func (r *reader) chmod() error {
	p, mode := r.dec.str(attrPath), r.dec.u64(attrMode)
	if r.dec.err != nil {
		return r.dec.err
	}
	if mode > fstree.ModePerm {
		return fmt.Errorf("mode %#o has more than permission bits", mode)
	}
	n, err := r.lookup(p)
	if err != nil {
		return err
	}
	if n.Type() == fstree.ModeSymlink {
		return fmt.Errorf("chmod of a symlink (receive's chmod would follow it)")
	}
	n.Mode = n.Type() | uint32(mode)
	return nil
}

func (r *reader) utimes() error {
	d := r.dec
	p, atime, mtime, ctime := d.str(attrPath), d.time(attrAtime), d.time(attrMtime), d.time(attrCtime)
	if d.err != nil {
		return d.err
	}
	n, err := r.lookup(p)
	if err != nil {
		return err
	}
	n.Atime, n.Mtime, n.Ctime = atime, mtime, ctime
	return nil
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

// finish checks every path against the limits (a rename moves a whole
// subtree, so only the final tree tells) and sets each file's content.
func (r *reader) finish() error {
	if p, over := r.overLimits(r.tree.Root, 0, 0); over {
		return fmt.Errorf("send stream %s: %q is deeper than %d names or longer than %d bytes", r.opts.Name, "/"+p, r.lim.MaxDepth, r.lim.MaxPath)
	}
	for n, f := range r.files {
		n.Content = f.content()
	}
	return nil
}

// overLimits returns the path below directory n (whose path is plen
// bytes and depth names long) of the first entry over MaxDepth or
// MaxPath. Only a path that fails is built.
func (r *reader) overLimits(n *fstree.Inode, plen, depth int) (string, bool) {
	for _, name := range n.Names() {
		l := plen + len(name)
		if plen > 0 {
			l++ // the slash
		}
		if depth+1 > r.lim.MaxDepth || l > r.lim.MaxPath {
			return name, true
		}
		if p, over := r.overLimits(n.Children[name], l, depth+1); over {
			return name + "/" + p, true
		}
	}
	return "", false
}
