package sendstream

import (
	"bytes"
	"fmt"
	"io"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/mkimage/mkimage/internal/fstree"
)

// Options name the subvolume a stream makes.
type Options struct {
	// Name is the subvolume receive creates in its target directory.
	Name string
	// UUID and CTransid identify this version. The receiver records them
	// as the new subvolume's received UUID and stransid; an incremental
	// stream against this version names them as its parent.
	UUID     [16]byte
	CTransid uint64
	// ParentUUID and ParentCTransid (incremental streams only) are the
	// UUID and CTransid the parent version's stream was written with.
	ParentUUID     [16]byte
	ParentCTransid uint64
}

// capability is set after chown and chmod, and again after any write:
// the kernel drops it on both, as it drops setuid and setgid on chown.
const capability = "security.capability"

// WriteFull writes a stream that creates tree as the new subvolume
// opts.Name. Creation order: parents before children; per inode data,
// xattrs, owner, mode, capability, times; a directory's times once
// everything in it exists.
func WriteFull(w io.Writer, tree *fstree.Tree, opts Options) error {
	if err := checkName(opts.Name); err != nil {
		return fmt.Errorf("send stream: %w", err)
	}
	if err := tree.Validate(); err != nil {
		return fmt.Errorf("send stream %s: %w", opts.Name, err)
	}
	s := newSender(w)
	if err := s.full(tree, opts); err != nil {
		return fmt.Errorf("send stream %s: %w", opts.Name, err)
	}
	return nil
}

func (s *sender) full(tree *fstree.Tree, opts Options) error {
	if err := s.enc.header(); err != nil {
		return err
	}
	s.enc.begin(cmdSubvol)
	s.enc.str(attrPath, opts.Name)
	s.enc.bytes(attrUUID, opts.UUID[:])
	s.enc.u64(attrCtransid, opts.CTransid)
	if err := s.enc.end(); err != nil {
		return err
	}
	if err := s.create("", tree.Root); err != nil {
		return err
	}
	return s.finish()
}

// WriteIncremental writes a stream that turns a received copy of parent
// (identified by opts.ParentUUID and opts.ParentCTransid) into child, as
// the new snapshot opts.Name. Entries are matched by path: what is new,
// gone or changed in type is created or removed (a rename is a removal and
// a creation), what only changed is updated in place, sending only the
// WriteChunk blocks whose bytes differ. A file whose set of hard-link
// names differs between the trees is replaced whole, so links always come
// out right.
func WriteIncremental(w io.Writer, parent, child *fstree.Tree, opts Options) error {
	if err := checkName(opts.Name); err != nil {
		return fmt.Errorf("send stream: %w", err)
	}
	if err := parent.Validate(); err != nil {
		return fmt.Errorf("send stream %s: parent: %w", opts.Name, err)
	}
	if err := child.Validate(); err != nil {
		return fmt.Errorf("send stream %s: %w", opts.Name, err)
	}
	s := newSender(w)
	if err := s.incremental(parent, child, opts); err != nil {
		return fmt.Errorf("send stream %s: %w", opts.Name, err)
	}
	return nil
}

func (s *sender) incremental(parent, child *fstree.Tree, opts Options) error {
	s.oldNames, s.newNames = names(parent), names(child)
	s.ino = 256 + uint64(len(s.oldNames)) // new inodes after the parent's
	if err := s.enc.header(); err != nil {
		return err
	}
	s.enc.begin(cmdSnapshot)
	s.enc.str(attrPath, opts.Name)
	s.enc.bytes(attrUUID, opts.UUID[:])
	s.enc.u64(attrCtransid, opts.CTransid)
	s.enc.bytes(attrCloneUUID, opts.ParentUUID[:])
	s.enc.u64(attrCloneCtransid, opts.ParentCTransid)
	if err := s.enc.end(); err != nil {
		return err
	}
	if err := s.updateDir("", parent.Root, child.Root); err != nil {
		return err
	}
	return s.finish()
}

// checkName accepts what can name a directory entry.
func checkName(name string) error {
	if name == "" || len(name) > 255 || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("invalid subvolume name %q", name)
	}
	return nil
}

type sender struct {
	enc     encoder
	ino     uint64                   // last inode number handed out
	created map[*fstree.Inode]string // the first name of each inode sent whole
	// Incremental: every name of each inode, in walk order.
	oldNames, newNames map[*fstree.Inode][]string
	data               []byte // WriteChunk bytes of scratch
	old                []byte // likewise, for the parent's content
}

func newSender(w io.Writer) *sender {
	return &sender{enc: encoder{w: w}, ino: 256, created: map[*fstree.Inode]string{}}
}

func (s *sender) finish() error {
	s.enc.begin(cmdEnd)
	return s.enc.end()
}

// names maps every inode of t to its names in walk order.
func names(t *fstree.Tree) map[*fstree.Inode][]string {
	m := map[*fstree.Inode][]string{}
	t.Walk(func(p string, n *fstree.Inode) error {
		m[n] = append(m[n], p)
		return nil
	})
	return m
}

// cmd starts a command on path p.
func (s *sender) cmd(cmd uint16, p string) error {
	if len(p) > maxPath {
		return fmt.Errorf("/%s: path is %d bytes, longer than receive accepts (%d)", p, len(p), maxPath)
	}
	s.enc.begin(cmd)
	s.enc.str(attrPath, p)
	return nil
}

// simple sends a command with just a path.
func (s *sender) simple(cmd uint16, p string) error {
	if err := s.cmd(cmd, p); err != nil {
		return err
	}
	return s.end(p)
}

func (s *sender) end(p string) error {
	if err := s.enc.end(); err != nil {
		return fmt.Errorf("/%s: %w", p, err)
	}
	return nil
}

// create sends n, new at p, and everything below it. A further name of
// an inode already sent becomes a hard link. p "" is the subvolume's top
// directory, which receive makes.
func (s *sender) create(p string, n *fstree.Inode) error {
	if first, ok := s.created[n]; ok {
		if err := s.cmd(cmdLink, p); err != nil {
			return err
		}
		s.enc.str(attrPathLink, first)
		return s.end(p)
	}
	s.created[n] = p
	if p != "" {
		s.ino++
		cmd := createCmd[n.Type()]
		if err := s.cmd(cmd, p); err != nil {
			return err
		}
		s.enc.u64(attrIno, s.ino)
		switch cmd {
		case cmdSymlink:
			s.enc.str(attrPathLink, n.Target)
		case cmdMknod, cmdMkfifo, cmdMksock:
			s.enc.u64(attrMode, uint64(n.Mode&(fstree.ModeType|fstree.ModePerm)))
			s.enc.u64(attrRdev, rdev(n))
		}
		if err := s.end(p); err != nil {
			return err
		}
	}
	if n.Type() == fstree.ModeRegular {
		if err := s.writeNew(p, n); err != nil {
			return err
		}
	}
	if err := s.setMeta(p, nil, n, true); err != nil {
		return err
	}
	if n.IsDir() {
		for _, name := range n.Names() {
			if err := s.create(path.Join(p, name), n.Children[name]); err != nil {
				return err
			}
		}
	}
	return s.utimes(p, n)
}

// createCmd makes each file type (Validate lets no other through).
var createCmd = map[uint32]uint16{
	fstree.ModeDir: cmdMkdir, fstree.ModeRegular: cmdMkfile, fstree.ModeSymlink: cmdSymlink,
	fstree.ModeChar: cmdMknod, fstree.ModeBlock: cmdMknod, fstree.ModeFIFO: cmdMkfifo, fstree.ModeSocket: cmdMksock,
}

// rdev is the device number as glibc's makedev encodes it, which receive
// hands to mknod.
func rdev(n *fstree.Inode) uint64 {
	ma, mi := uint64(n.Major), uint64(n.Minor)
	return ma&0xfff<<8 | ma&^0xfff<<32 | mi&0xff | mi&^0xff<<12
}

// setMeta brings the xattrs, owner and mode of the inode at p from old
// (nil: as receive creates it) to n. killed says a write or truncate
// since took the capability away.
func (s *sender) setMeta(p string, old, n *fstree.Inode, killed bool) error {
	var oldX map[string][]byte
	if old != nil {
		oldX = old.Xattrs
	}
	for _, k := range sortedKeys(oldX) {
		if _, ok := n.Xattrs[k]; ok || (k == capability && killed) {
			continue
		}
		if err := s.cmd(cmdRemoveXattr, p); err != nil {
			return err
		}
		s.enc.str(attrXattrName, k)
		if err := s.end(p); err != nil {
			return err
		}
	}
	for _, k := range sortedKeys(n.Xattrs) {
		if v, ok := oldX[k]; k == capability || ok && bytes.Equal(v, n.Xattrs[k]) {
			continue
		}
		if err := s.setXattr(p, k, n.Xattrs[k]); err != nil {
			return err
		}
	}
	if old == nil || old.Uid != n.Uid || old.Gid != n.Gid {
		if err := s.cmd(cmdChown, p); err != nil {
			return err
		}
		s.enc.u64(attrUid, uint64(n.Uid))
		s.enc.u64(attrGid, uint64(n.Gid))
		if err := s.end(p); err != nil {
			return err
		}
		killed = !n.IsDir()
	}
	perm := n.Mode & fstree.ModePerm
	// receive's chmod follows symlinks; a symlink's mode is fixed anyway.
	if n.Type() != fstree.ModeSymlink && (old == nil || old.Mode&fstree.ModePerm != perm || killed && perm&0o6000 != 0) {
		if err := s.cmd(cmdChmod, p); err != nil {
			return err
		}
		s.enc.u64(attrMode, uint64(perm))
		if err := s.end(p); err != nil {
			return err
		}
	}
	if v, ok := n.Xattrs[capability]; ok {
		if ov, had := oldX[capability]; killed || !had || !bytes.Equal(ov, v) {
			return s.setXattr(p, capability, v)
		}
	}
	return nil
}

func (s *sender) setXattr(p, name string, v []byte) error {
	if err := s.cmd(cmdSetXattr, p); err != nil {
		return err
	}
	s.enc.str(attrXattrName, name)
	s.enc.bytes(attrXattrData, v)
	return s.end(p)
}

func (s *sender) utimes(p string, n *fstree.Inode) error {
	if err := s.cmd(cmdUtimes, p); err != nil {
		return err
	}
	s.enc.time(attrAtime, n.Atime)
	s.enc.time(attrMtime, n.Mtime)
	s.enc.time(attrCtime, n.Ctime)
	return s.end(p)
}

func (s *sender) write(p string, off int64, data []byte) error {
	if err := s.cmd(cmdWrite, p); err != nil {
		return err
	}
	s.enc.u64(attrFileOffset, uint64(off))
	s.enc.bytes(attrData, data)
	return s.end(p)
}

func (s *sender) truncate(p string, size int64) error {
	if err := s.cmd(cmdTruncate, p); err != nil {
		return err
	}
	s.enc.u64(attrSize, uint64(size))
	return s.end(p)
}

// writeNew sends the data of a new file: the data ranges of a sparse
// file (holes stay holes), then a truncate when a hole ends the file.
func (s *sender) writeNew(p string, n *fstree.Inode) error {
	size := n.Size()
	if size == 0 {
		return nil
	}
	extents := []fstree.Extent{{Offset: 0, Length: size}}
	if sp, ok := n.Content.(fstree.Sparse); ok {
		extents = sp.Extents()
	}
	r, err := n.Content.Open()
	if err != nil {
		return fmt.Errorf("/%s: %w", p, err)
	}
	defer r.Close()
	if s.data == nil {
		s.data = make([]byte, WriteChunk)
	}
	pos := int64(0)
	for _, e := range extents {
		if e.Offset < pos || e.Length < 0 || e.Offset+e.Length > size {
			return fmt.Errorf("/%s: data extent %d+%d out of order or past the end (%d bytes)", p, e.Offset, e.Length, size)
		}
		if _, err := io.CopyN(io.Discard, r, e.Offset-pos); err != nil {
			return fmt.Errorf("/%s: reading content: %w", p, err)
		}
		for off := e.Offset; off < e.Offset+e.Length; off += WriteChunk {
			buf := s.data[:min(WriteChunk, e.Offset+e.Length-off)]
			if _, err := io.ReadFull(r, buf); err != nil {
				return fmt.Errorf("/%s: reading content at %d: %w", p, off, err)
			}
			if err := s.write(p, off, buf); err != nil {
				return err
			}
		}
		pos = e.Offset + e.Length
	}
	if pos < size {
		return s.truncate(p, size)
	}
	return nil
}

// updateDir brings directory old at p to n. Entries go in name order; a
// directory's times go last, after anything that moved its mtime.
func (s *sender) updateDir(p string, old, n *fstree.Inode) error {
	if err := s.setMeta(p, old, n, false); err != nil {
		return err
	}
	names := map[string]bool{}
	for name := range old.Children {
		names[name] = true
	}
	for name := range n.Children {
		names[name] = true
	}
	entries := false // an entry was added or removed: mtime moved
	for _, name := range sortedKeys(names) {
		o, ook := old.Children[name]
		c, cok := n.Children[name]
		cp := path.Join(p, name)
		switch {
		case ook && cok && o.IsDir() && c.IsDir():
			if err := s.updateDir(cp, o, c); err != nil {
				return err
			}
		case ook && cok && s.same(o, c):
			if s.newNames[c][0] != cp {
				continue // a further name: the inode was updated at its first
			}
			if err := s.updateFile(cp, o, c); err != nil {
				return err
			}
		case ook && cok && !o.IsDir() && !c.IsDir() && s.created[c] == "":
			// A new file over an old one: made whole under a temporary
			// name, then renamed over it, as the kernel does.
			tmp := path.Join(p, tempName(old, n, s.ino+1))
			if err := s.create(tmp, c); err != nil {
				return err
			}
			if err := s.cmd(cmdRename, tmp); err != nil {
				return err
			}
			s.enc.str(attrPathTo, cp)
			if err := s.end(tmp); err != nil {
				return err
			}
			s.created[c] = cp
			entries = true
		default:
			if ook {
				if err := s.remove(cp, o); err != nil {
					return err
				}
				entries = true
			}
			if cok {
				if err := s.create(cp, c); err != nil {
					return err
				}
				entries = true
			}
		}
	}
	if entries || !old.Atime.Equal(n.Atime) || !old.Mtime.Equal(n.Mtime) {
		return s.utimes(p, n)
	}
	return nil
}

// tempName is the kernel's name for an inode not yet in place,
// o<ino>-<gen>-<n>, made unique among the entries of both directories.
func tempName(old, n *fstree.Inode, ino uint64) string {
	for k := 0; ; k++ {
		name := fmt.Sprintf("o%d-0-%d", ino, k)
		_, inOld := old.Children[name]
		if _, inNew := n.Children[name]; !inOld && !inNew {
			return name
		}
	}
}

// same reports whether non-directory o can be updated in place into c:
// same type, symlink target and device, and the same names in both trees
// (otherwise it is replaced, so hard links come out right).
func (s *sender) same(o, c *fstree.Inode) bool {
	if o.Type() != c.Type() || o.IsDir() {
		return false
	}
	switch o.Type() {
	case fstree.ModeSymlink:
		if o.Target != c.Target {
			return false
		}
	case fstree.ModeChar, fstree.ModeBlock:
		if o.Major != c.Major || o.Minor != c.Minor {
			return false
		}
	}
	return slices.Equal(s.oldNames[o], s.newNames[c])
}

// updateFile brings non-directory old at p to n in place.
func (s *sender) updateFile(p string, old, n *fstree.Inode) error {
	changed := false
	if n.Type() == fstree.ModeRegular {
		var err error
		if changed, err = s.updateData(p, old, n); err != nil {
			return err
		}
	}
	before := s.enc.n
	if err := s.setMeta(p, old, n, changed); err != nil {
		return err
	}
	if changed || s.enc.n != before || !old.Atime.Equal(n.Atime) || !old.Mtime.Equal(n.Mtime) {
		return s.utimes(p, n)
	}
	return nil
}

// updateData sends the WriteChunk blocks of n that differ from old's,
// then a truncate when the size changed and the writes did not set it.
// Growth that is all zeros is left to the truncate.
func (s *sender) updateData(p string, old, n *fstree.Inode) (bool, error) {
	osize, size := old.Size(), n.Size()
	if size == 0 {
		if osize == 0 {
			return false, nil
		}
		return true, s.truncate(p, 0)
	}
	r, err := n.Content.Open()
	if err != nil {
		return false, fmt.Errorf("/%s: %w", p, err)
	}
	defer r.Close()
	var or io.Reader = bytes.NewReader(nil)
	if osize > 0 {
		orc, err := old.Content.Open()
		if err != nil {
			return false, fmt.Errorf("/%s: parent: %w", p, err)
		}
		defer orc.Close()
		or = orc
	}
	if s.data == nil {
		s.data = make([]byte, WriteChunk)
	}
	if s.old == nil {
		s.old = make([]byte, WriteChunk)
	}
	changed := false
	end := int64(0) // where the last write ended
	for off := int64(0); off < size; off += WriteChunk {
		buf := s.data[:min(WriteChunk, size-off)]
		if _, err := io.ReadFull(r, buf); err != nil {
			return false, fmt.Errorf("/%s: reading content at %d: %w", p, off, err)
		}
		ob := s.old[:max(0, min(int64(len(buf)), osize-off))]
		if _, err := io.ReadFull(or, ob); err != nil {
			return false, fmt.Errorf("/%s: reading parent content at %d: %w", p, off, err)
		}
		if bytes.Equal(ob, buf[:len(ob)]) && fstree.IsZero(buf[len(ob):]) {
			continue
		}
		if err := s.write(p, off, buf); err != nil {
			return false, err
		}
		changed, end = true, off+int64(len(buf))
	}
	// A shrink needs the truncate; so does growth the writes do not
	// reach to the end.
	if size < osize || size > osize && end != size {
		return true, s.truncate(p, size)
	}
	return changed, nil
}

// remove deletes old at p, a directory with everything in it.
func (s *sender) remove(p string, old *fstree.Inode) error {
	if !old.IsDir() {
		return s.simple(cmdUnlink, p)
	}
	for _, name := range old.Names() {
		if err := s.remove(path.Join(p, name), old.Children[name]); err != nil {
			return err
		}
	}
	return s.simple(cmdRmdir, p)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
