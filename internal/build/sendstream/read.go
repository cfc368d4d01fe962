package sendstream

import (
	"fmt"
	"io"
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
