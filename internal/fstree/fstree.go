// Package fstree is the in-memory file tree every filesystem writer of
// mkimage consumes (btrfs, FAT, cpio). Sources (a host directory, a tarball,
// .deb packages, overlays) build a Tree; writers walk it in sorted order so
// that the same tree always gives the same bytes.
//
// Hard links are one *Inode reachable under several names. Directories are
// never hard-linked.
package fstree

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"time"
)

// Linux file type bits of st_mode (the same values on every Linux arch).
const (
	ModeType    = 0o170000
	ModeSocket  = 0o140000
	ModeSymlink = 0o120000
	ModeRegular = 0o100000
	ModeBlock   = 0o060000
	ModeDir     = 0o040000
	ModeChar    = 0o020000
	ModeFIFO    = 0o010000
	ModePerm    = 0o7777 // permission bits plus setuid, setgid, sticky
)

// Inode is one file object. Mode carries Linux st_mode bits: the file type
// (ModeDir, ModeRegular, ...) plus permissions.
type Inode struct {
	Mode  uint32
	Uid   uint32
	Gid   uint32
	Atime time.Time
	Mtime time.Time
	Ctime time.Time

	// Xattrs holds extended attributes by full name ("user.x",
	// "security.capability").
	Xattrs map[string][]byte

	// Regular files.
	Content Content

	// Symlinks: the target, stored without a trailing NUL.
	Target string

	// Character and block devices.
	Major, Minor uint32

	// Directories: entries by name (no "/" or NUL; not "." or "..").
	Children map[string]*Inode
}

// Type returns the file type bits of Mode.
func (n *Inode) Type() uint32 { return n.Mode & ModeType }

// IsDir reports whether n is a directory.
func (n *Inode) IsDir() bool { return n.Type() == ModeDir }

// Size returns the byte length of a regular file or a symlink, 0 otherwise.
func (n *Inode) Size() int64 {
	switch n.Type() {
	case ModeRegular:
		if n.Content == nil {
			return 0
		}
		return n.Content.Size()
	case ModeSymlink:
		return int64(len(n.Target))
	}
	return 0
}

// Names returns the sorted child names of a directory.
func (n *Inode) Names() []string {
	names := make([]string, 0, len(n.Children))
	for name := range n.Children {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Content is the data of a regular file.
type Content interface {
	// Size is the file's length in bytes (holes included).
	Size() int64
	// Open returns a reader of the whole file, holes read as zeros.
	Open() (io.ReadCloser, error)
}

// Sparse is implemented by Content whose holes are known. Extents returns
// the byte ranges that hold data, sorted and not overlapping; everything
// else up to Size is a hole. Writers that support holes use it.
type Sparse interface {
	Content
	Extents() []Extent
}

// Extent is a data range of a sparse file.
type Extent struct {
	Offset, Length int64
}

// IsZero reports whether b holds only zero bytes: such a range of a file
// is a hole (readers map it out, writers need not write it).
func IsZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Bytes is file content held in memory.
type Bytes []byte

func (b Bytes) Size() int64                  { return int64(len(b)) }
func (b Bytes) Open() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }

// ReadBytes reads exactly size bytes of r, the content an archive header
// announces. The buffer grows as the data arrives (from 1 MiB, doubling,
// capped at size), so a header that claims gigabytes over a short stream
// costs what the stream holds, not what it claims. Running out early is
// io.ErrUnexpectedEOF.
func ReadBytes(r io.Reader, size int64) (Bytes, error) {
	if size < 0 {
		return nil, fmt.Errorf("negative size %d", size)
	}
	b := make([]byte, min(size, 1<<20))
	n := 0
	for {
		m, err := io.ReadFull(r, b[n:])
		n += m
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, io.ErrUnexpectedEOF
		}
		if err != nil {
			return nil, err
		}
		if int64(n) == size {
			return b, nil
		}
		k := int(min(int64(len(b)), size-int64(len(b))))
		b = slices.Grow(b, k)[:len(b)+k]
	}
}

// SparseBytes is sparse file content held in memory: the bytes of each
// data extent; everything else up to Length reads as zeros.
type SparseBytes struct {
	Length int64
	// Ranges are the data extents, sorted and not overlapping; Data[i]
	// holds the Ranges[i].Length bytes of Ranges[i].
	Ranges []Extent
	Data   [][]byte
}

func (s *SparseBytes) Size() int64       { return s.Length }
func (s *SparseBytes) Extents() []Extent { return s.Ranges }
func (s *SparseBytes) Open() (io.ReadCloser, error) {
	var rs []io.Reader
	var off int64
	for i, e := range s.Ranges {
		rs = append(rs, io.LimitReader(zeros{}, e.Offset-off), bytes.NewReader(s.Data[i]))
		off = e.Offset + e.Length
	}
	rs = append(rs, io.LimitReader(zeros{}, s.Length-off))
	return io.NopCloser(io.MultiReader(rs...)), nil
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// HostFile is file content read from a file on the build host when a
// writer needs it, so large trees are not held in memory.
type HostFile struct {
	Path   string
	Length int64
}

func (f HostFile) Size() int64 { return f.Length }
func (f HostFile) Open() (io.ReadCloser, error) {
	fh, err := os.Open(f.Path)
	if err != nil {
		return nil, err
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, err
	}
	if st.Size() != f.Length {
		fh.Close()
		return nil, fmt.Errorf("%s changed size while building (was %d bytes, now %d)", f.Path, f.Length, st.Size())
	}
	return fh, nil
}

// ReadAll returns the whole content of a regular file.
func ReadAll(c Content) ([]byte, error) {
	if c == nil {
		return nil, nil
	}
	if b, ok := c.(Bytes); ok {
		return b, nil
	}
	r, err := c.Open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// Tree is a whole file tree. Root is the top directory; its own owner, mode
// and times are those of the filesystem's top directory.
type Tree struct {
	Root *Inode
}

// New returns a tree with an empty root directory (mode 0755, owned by 0:0,
// times at epoch).
func New(epoch time.Time) *Tree {
	return &Tree{Root: NewDir(0o755, epoch)}
}

// NewDir returns an empty directory inode.
func NewDir(perm uint32, t time.Time) *Inode {
	return &Inode{Mode: ModeDir | perm&ModePerm, Atime: t, Mtime: t, Ctime: t, Children: map[string]*Inode{}}
}

// NewFile returns a regular file inode holding data.
func NewFile(perm uint32, data []byte, t time.Time) *Inode {
	return &Inode{Mode: ModeRegular | perm&ModePerm, Atime: t, Mtime: t, Ctime: t, Content: Bytes(data)}
}

// NewSymlink returns a symlink inode.
func NewSymlink(target string, t time.Time) *Inode {
	return &Inode{Mode: ModeSymlink | 0o777, Atime: t, Mtime: t, Ctime: t, Target: target}
}

// Clean turns p into the slash-separated path of an entry below the root
// ("" for the root itself). It rejects absolute paths and any ".." so that
// no entry can name something outside the tree.
func Clean(p string) (string, error) {
	if strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("path %q is absolute", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", fmt.Errorf("path %q leaves the root (contains ..)", p)
		}
		if strings.IndexByte(part, 0) >= 0 {
			return "", fmt.Errorf("path %q contains a NUL byte", p)
		}
	}
	c := path.Clean(p)
	if c == "." {
		return "", nil
	}
	return c, nil
}

// Lookup returns the inode at p, following no symlinks. ok is false when
// p does not exist.
func (t *Tree) Lookup(p string) (n *Inode, ok bool) {
	c, err := Clean(p)
	if err != nil {
		return nil, false
	}
	n = t.Root
	if c == "" {
		return n, true
	}
	for _, part := range strings.Split(c, "/") {
		if !n.IsDir() {
			return nil, false
		}
		n, ok = n.Children[part]
		if !ok {
			return nil, false
		}
	}
	return n, true
}

// Put places n at p, replacing what was there (a directory placed over a
// directory keeps nothing of the old one; use Merge to lay trees over each
// other). Parent directories must exist and be directories: a path through
// a symlink or a file is an error, so an entry can never land outside the
// tree by way of a symlink.
func (t *Tree) Put(p string, n *Inode) error {
	c, err := Clean(p)
	if err != nil {
		return err
	}
	if c == "" {
		if !n.IsDir() {
			return fmt.Errorf("root must be a directory")
		}
		t.Root = n
		return nil
	}
	dir, name := path.Split(c)
	parent, err := t.dir(strings.TrimSuffix(dir, "/"))
	if err != nil {
		return fmt.Errorf("%s: %w", c, err)
	}
	parent.Children[name] = n
	return nil
}

// MkdirAll makes the directory p and its parents (mode 0755, root-owned,
// times t) where missing, and returns it.
func (t *Tree) MkdirAll(p string, t0 time.Time) (*Inode, error) {
	c, err := Clean(p)
	if err != nil {
		return nil, err
	}
	n := t.Root
	if c == "" {
		return n, nil
	}
	walked := ""
	for _, part := range strings.Split(c, "/") {
		walked = path.Join(walked, part)
		child, ok := n.Children[part]
		if !ok {
			child = NewDir(0o755, t0)
			n.Children[part] = child
		} else if !child.IsDir() {
			return nil, fmt.Errorf("%s is not a directory (it is a %s)", walked, TypeName(child.Mode))
		}
		n = child
	}
	return n, nil
}

func (t *Tree) dir(p string) (*Inode, error) {
	n := t.Root
	if p == "" {
		return n, nil
	}
	walked := ""
	for _, part := range strings.Split(p, "/") {
		walked = path.Join(walked, part)
		child, ok := n.Children[part]
		if !ok {
			return nil, fmt.Errorf("parent directory %s does not exist", walked)
		}
		if !child.IsDir() {
			return nil, fmt.Errorf("parent %s is a %s, not a directory", walked, TypeName(child.Mode))
		}
		n = child
	}
	return n, nil
}

// Merge lays src over t as an overlay does: directories merge (src's
// owner, mode, times and xattrs win, except on the top directory, which
// stays as the base tree made it), anything else in src replaces what t
// had at that path.
func (t *Tree) Merge(src *Tree) {
	t.mergeDir("", t.Root, src.Root, true, true)
}

// Add puts src's entries into t like Merge, but directories t already has
// keep their own owner, mode and times: for trees such as kernel modules
// whose parent directories (lib/, lib/modules/) are only scaffolding.
func (t *Tree) Add(src *Tree) {
	t.mergeDir("", t.Root, src.Root, false, true)
}

// mergeDir merges directory src into dst (at path p). A directory in src
// whose name is a symlink to a directory in t goes into that directory
// and the symlink stays, as dpkg and `tar --keep-directory-symlink` do:
// an overlay with lib/ must not break a merged-/usr root's lib symlink.
func (t *Tree) mergeDir(p string, dst, src *Inode, meta, top bool) {
	if meta && !top {
		dst.Mode, dst.Uid, dst.Gid = src.Mode, src.Uid, src.Gid
		dst.Atime, dst.Mtime, dst.Ctime = src.Atime, src.Mtime, src.Ctime
		if len(src.Xattrs) > 0 {
			dst.Xattrs = src.Xattrs
		}
	}
	for _, name := range src.Names() {
		s := src.Children[name]
		d, ok := dst.Children[name]
		cp := path.Join(p, name)
		if ok && s.IsDir() && d.Type() == ModeSymlink {
			if rp, err := t.Resolve(cp); err == nil {
				if target, ok := t.Lookup(rp); ok && target.IsDir() && target != dst {
					t.mergeDir(rp, target, s, meta, false)
					continue
				}
			}
		}
		if ok && d.IsDir() && s.IsDir() {
			t.mergeDir(cp, d, s, meta, false)
			continue
		}
		dst.Children[name] = s
	}
}

// Resolve follows the symlinks in p inside the tree, with chroot
// semantics (an absolute target starts at the tree's root, ".." stops at
// it), and returns the path of what p names. Parts that do not exist are
// kept as they are.
func (t *Tree) Resolve(p string) (string, error) {
	var out []string
	parts := strings.Split(p, "/")
	for hops := 0; len(parts) > 0; {
		part := parts[0]
		parts = parts[1:]
		switch part {
		case "", ".":
			continue
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			continue
		}
		cur := strings.Join(append(out, part), "/")
		if n, ok := t.Lookup(cur); ok && n.Type() == ModeSymlink {
			if hops++; hops > 40 {
				return "", fmt.Errorf("too many levels of symlinks at %s", cur)
			}
			if strings.HasPrefix(n.Target, "/") {
				out = nil
			}
			parts = append(strings.Split(n.Target, "/"), parts...)
			continue
		}
		out = append(out, part)
	}
	return strings.Join(out, "/"), nil
}

// Clone returns a copy of t that can be changed without touching t:
// every inode, directory and xattr map is copied, hard links stay links
// (one copy per inode), file contents are shared (they are read-only).
func (t *Tree) Clone() *Tree {
	copies := map[*Inode]*Inode{}
	var cp func(n *Inode) *Inode
	cp = func(n *Inode) *Inode {
		if c, ok := copies[n]; ok {
			return c
		}
		c := *n
		copies[n] = &c
		if n.Xattrs != nil {
			c.Xattrs = make(map[string][]byte, len(n.Xattrs))
			for k, v := range n.Xattrs {
				c.Xattrs[k] = v
			}
		}
		if n.Children != nil {
			c.Children = make(map[string]*Inode, len(n.Children))
			for name, child := range n.Children {
				c.Children[name] = cp(child)
			}
		}
		return &c
	}
	return &Tree{Root: cp(t.Root)}
}

// WalkFunc is called for every entry, parents before children, children in
// sorted name order. p is "" for the root.
type WalkFunc func(p string, n *Inode) error

// Walk visits the whole tree in a fixed order: the same tree always gives
// the same sequence.
func (t *Tree) Walk(fn WalkFunc) error {
	return walk("", t.Root, fn)
}

func walk(p string, n *Inode, fn WalkFunc) error {
	if err := fn(p, n); err != nil {
		return err
	}
	if !n.IsDir() {
		return nil
	}
	for _, name := range n.Names() {
		if err := walk(path.Join(p, name), n.Children[name], fn); err != nil {
			return err
		}
	}
	return nil
}

// Stats summarises a tree.
type Stats struct {
	Entries   int   // names, root included
	Inodes    int   // distinct inodes
	DataBytes int64 // sum of regular file sizes, each inode once
}

// Stats counts the tree.
func (t *Tree) Stats() Stats {
	var s Stats
	seen := map[*Inode]bool{}
	t.Walk(func(_ string, n *Inode) error {
		s.Entries++
		if seen[n] {
			return nil
		}
		seen[n] = true
		s.Inodes++
		if n.Type() == ModeRegular {
			s.DataBytes += n.Size()
		}
		return nil
	})
	return s
}

// Validate checks what every writer relies on: known file types, names
// without "/" or NUL, no hard-linked directories, symlink targets present.
func (t *Tree) Validate() error {
	if t.Root == nil || !t.Root.IsDir() {
		return fmt.Errorf("tree root is not a directory")
	}
	dirs := map[*Inode]string{}
	return t.Walk(func(p string, n *Inode) error {
		show := "/" + p
		switch n.Type() {
		case ModeDir:
			if prev, ok := dirs[n]; ok {
				return fmt.Errorf("%s: directory is also linked at /%s (directories cannot be hard links)", show, prev)
			}
			dirs[n] = p
			for name := range n.Children {
				if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || len(name) > 255 {
					return fmt.Errorf("%s: invalid entry name %q", show, name)
				}
			}
		case ModeRegular, ModeChar, ModeBlock, ModeFIFO, ModeSocket:
		case ModeSymlink:
			if n.Target == "" {
				return fmt.Errorf("%s: symlink with an empty target", show)
			}
		default:
			return fmt.Errorf("%s: unknown file type %#o", show, n.Type())
		}
		return nil
	})
}

// TypeName names a file type for messages.
func TypeName(mode uint32) string {
	switch mode & ModeType {
	case ModeDir:
		return "directory"
	case ModeRegular:
		return "regular file"
	case ModeSymlink:
		return "symlink"
	case ModeChar:
		return "character device"
	case ModeBlock:
		return "block device"
	case ModeFIFO:
		return "fifo"
	case ModeSocket:
		return "socket"
	}
	return fmt.Sprintf("type %#o", mode&ModeType)
}
