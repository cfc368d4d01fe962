package btrfs

import (
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/fstree"
)

// subvol is one fs tree: the top-level tree 5 or a subvolume.
type subvol struct {
	id     uint64
	path   string // where it sits in the caller's tree ("" = tree root)
	root   *fstree.Inode
	parent *subvol
	// Its entry in the parent tree.
	name   string
	dirIno uint64
	index  uint64

	inodes []*inodeRec
	items  []item
	uuid   [16]byte
	// received: a read-only subvolume as `btrfs receive` leaves it.
	received *Received
}

// inodeRec is one inode of one subvolume.
type inodeRec struct {
	ino     uint64
	n       *fstree.Inode
	path    string // first path, for messages
	refs    []nameRef
	entries []dirEnt
	dirSize uint64
}

type nameRef struct {
	parent, index uint64
	name          string
}

type dirEnt struct {
	name  string
	index uint64
	loc   key
	typ   uint8
}

// fileData is the data plan of one regular file or symlink.
type fileData struct {
	rec    *inodeRec
	sv     *subvol
	size   int64
	inline []byte   // item body of an inline extent (21-byte header + data)
	ranges []frange // sector-aligned data ranges (regular extents)
	pieces []piece  // ranges cut into extents at their disk addresses
}

type frange struct{ off, len int64 }

// piece is one regular extent: file offset, disk address and length, all
// sector-aligned.
type piece struct {
	off  int64
	addr uint64
	len  uint64
}

func fileType(mode uint32) uint8 {
	switch mode & fstree.ModeType {
	case fstree.ModeRegular:
		return ftReg
	case fstree.ModeDir:
		return ftDir
	case fstree.ModeChar:
		return ftChr
	case fstree.ModeBlock:
		return ftBlk
	case fstree.ModeFIFO:
		return ftFifo
	case fstree.ModeSocket:
		return ftSock
	case fstree.ModeSymlink:
		return ftSymlink
	}
	return 0
}

// splitSubvolumes returns the fs trees in id order: tree 5 first, then
// the root subvolume, then the nested ones by path. The caller's tree is
// not changed: directories on the way to a missing subvolume are copied.
func splitSubvolumes(t *fstree.Tree, o *Options) ([]*subvol, error) {
	root := t.Root
	var paths []string
	seen := map[string]bool{}
	for _, p := range o.Subvolumes {
		c, err := fstree.Clean(p)
		if err != nil {
			return nil, fmt.Errorf("subvolume %q: %w", p, err)
		}
		if c == "" {
			return nil, fmt.Errorf("subvolume %q: names the tree root; use RootSubvolume for that", p)
		}
		if !seen[c] {
			seen[c] = true
			paths = append(paths, c)
		}
	}
	sort.Strings(paths)
	// Copy the spine of each subvolume path so missing ones can be added.
	copyDir := func(d *fstree.Inode) *fstree.Inode {
		c := *d
		c.Children = make(map[string]*fstree.Inode, len(d.Children))
		for k, v := range d.Children {
			c.Children[k] = v
		}
		return &c
	}
	if len(paths) > 0 {
		root = copyDir(root)
	}
	for _, p := range paths {
		d := root
		walked := ""
		for _, part := range strings.Split(p, "/") {
			walked = path.Join(walked, part)
			c, ok := d.Children[part]
			if !ok {
				c = fstree.NewDir(0o755, o.Time)
			} else if !c.IsDir() {
				return nil, fmt.Errorf("subvolume %q: %s is a %s, not a directory", p, walked, fstree.TypeName(c.Mode))
			} else {
				c = copyDir(c)
			}
			d.Children[part] = c
			d = c
		}
	}
	top := &subvol{id: fsTreeID, root: root}
	svs := []*subvol{top}
	next := uint64(firstFreeID)
	if o.RootSubvolume != "" {
		name := o.RootSubvolume
		if strings.ContainsAny(name, "/\x00") || name == "." || name == ".." || len(name) > 255 {
			return nil, fmt.Errorf("root subvolume name %q: must be one path component (like \"@\")", name)
		}
		top.root = fstree.NewDir(0o755, o.Time)
		top.root.Children[name] = root
		sv := &subvol{id: next, root: root, name: name, parent: top}
		next++
		svs = append(svs, sv)
	}
	for p := range o.Received {
		if c, err := fstree.Clean(p); err != nil || !seen[c] {
			return nil, fmt.Errorf("received subvolume %q: not one of the Subvolumes", p)
		}
	}
	for _, p := range paths {
		n, _ := (&fstree.Tree{Root: root}).Lookup(p)
		sv := &subvol{id: next, path: p, root: n, name: path.Base(p)}
		for q, r := range o.Received {
			if c, _ := fstree.Clean(q); c == p {
				sv.received = &r
			}
		}
		next++
		svs = append(svs, sv)
	}
	// Parents: the nearest subvolume above (paths are sorted, so parents
	// come first).
	base := svs[0]
	if o.RootSubvolume != "" {
		base = svs[1]
	}
	for _, sv := range svs {
		if sv.path == "" {
			continue
		}
		sv.parent = base
		for _, q := range svs {
			if q.path != "" && q != sv && strings.HasPrefix(sv.path, q.path+"/") && len(q.path) > len(sv.parent.path) {
				sv.parent = q
			}
		}
	}
	return svs, nil
}

// number assigns inode numbers in walk order and records names, stopping
// at nested subvolume roots.
func (sv *subvol) number(roots map[*fstree.Inode]*subvol) error {
	ids := map[*fstree.Inode]*inodeRec{}
	rootRec := &inodeRec{ino: firstFreeID, n: sv.root, path: sv.path}
	ids[sv.root] = rootRec
	sv.inodes = []*inodeRec{rootRec}
	next := uint64(firstFreeID + 1)
	var walk func(d *inodeRec, p string) error
	walk = func(d *inodeRec, p string) error {
		idx := uint64(2)
		for _, name := range d.n.Names() {
			c := d.n.Children[name]
			cp := path.Join(p, name)
			if child, ok := roots[c]; ok && child != sv {
				child.dirIno, child.index = d.ino, idx
				d.entries = append(d.entries, dirEnt{name: name, index: idx, loc: key{child.id, typeRootItem, 0}, typ: ftDir})
				d.dirSize += 2 * uint64(len(name))
				idx++
				continue
			}
			typ := fileType(c.Mode)
			if typ == 0 {
				return fmt.Errorf("/%s: unknown file type %#o", cp, c.Type())
			}
			rec, ok := ids[c]
			if !ok {
				rec = &inodeRec{ino: next, n: c, path: cp}
				next++
				ids[c] = rec
				sv.inodes = append(sv.inodes, rec)
			} else if c.IsDir() {
				return fmt.Errorf("/%s: directory is also linked at /%s (directories cannot be hard links)", cp, rec.path)
			}
			rec.refs = append(rec.refs, nameRef{parent: d.ino, index: idx, name: name})
			d.entries = append(d.entries, dirEnt{name: name, index: idx, loc: key{rec.ino, typeInodeItem, 0}, typ: typ})
			d.dirSize += 2 * uint64(len(name))
			idx++
			if !ok && c.IsDir() {
				if err := walk(rec, cp); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(rootRec, sv.path)
}

// planFile decides inline or regular extents for a regular file or
// symlink.
func planFile(rec *inodeRec, sv *subvol, inlineMax int64) (*fileData, error) {
	n := rec.n
	f := &fileData{rec: rec, sv: sv}
	if n.Type() == fstree.ModeSymlink {
		if len(n.Target) == 0 || int64(len(n.Target)) > inlineMax {
			return nil, fmt.Errorf("/%s: symlink target is %d bytes; it must be 1..%d", rec.path, len(n.Target), inlineMax)
		}
		f.size = int64(len(n.Target))
		f.inline = append(inlineHeader(len(n.Target)), n.Target...)
		return f, nil
	}
	f.size = n.Size()
	if f.size < 0 {
		return nil, fmt.Errorf("/%s: negative size %d", rec.path, f.size)
	}
	if f.size == 0 {
		return f, nil
	}
	var ranges []fstree.Extent
	if sp, ok := n.Content.(fstree.Sparse); ok {
		ranges = sp.Extents()
		if len(ranges) == 0 {
			return f, nil // all hole
		}
	}
	if f.size <= inlineMax {
		f.inline = make([]byte, 21+f.size) // data is read in the data pass
		copy(f.inline, inlineHeader(int(f.size)))
		return f, nil
	}
	end := (f.size + sectorSize - 1) &^ (sectorSize - 1)
	if ranges == nil {
		f.ranges = []frange{{0, end}}
		return f, nil
	}
	for _, r := range ranges {
		if r.Offset < 0 || r.Length < 0 || r.Offset+r.Length > f.size {
			return nil, fmt.Errorf("/%s: data range %d+%d lies outside the file's %d bytes", rec.path, r.Offset, r.Length, f.size)
		}
		if r.Length == 0 {
			continue
		}
		s := r.Offset &^ (sectorSize - 1)
		e := min((r.Offset+r.Length+sectorSize-1)&^(sectorSize-1), end)
		if k := len(f.ranges) - 1; k >= 0 && s <= f.ranges[k].off+f.ranges[k].len {
			if s < f.ranges[k].off {
				return nil, fmt.Errorf("/%s: sparse data ranges are not sorted", rec.path)
			}
			f.ranges[k].len = max(f.ranges[k].len, e-f.ranges[k].off)
			continue
		}
		f.ranges = append(f.ranges, frange{s, e - s})
	}
	return f, nil
}

func inlineHeader(n int) []byte {
	return enc(nil).u64(generation).u64(uint64(n)).u8(0).u8(0).u16(0).u8(0)
}

// items builds every item of the fs tree, in key order. Inline data
// buffers are shared with the fileData, so they may be filled later.
func (sv *subvol) buildItems(o *Options, files map[*inodeRec]*fileData) ([]item, error) {
	maxItem := o.NodeSize - headerSize - itemSize
	var items []item
	for _, rec := range sv.inodes {
		n := rec.n
		ino := rec.ino
		in := inodeItem{
			nlink: uint32(len(rec.refs)),
			uid:   n.Uid, gid: n.Gid,
			mode:  n.Mode & (fstree.ModeType | fstree.ModePerm),
			atime: n.Atime, ctime: n.Ctime, mtime: n.Mtime, otime: n.Ctime,
		}
		f := files[rec]
		switch n.Type() {
		case fstree.ModeDir:
			in.nlink = 1
			in.size = rec.dirSize
		case fstree.ModeChar, fstree.ModeBlock:
			in.rdev = uint64(n.Major)<<20 | uint64(n.Minor)
		case fstree.ModeRegular, fstree.ModeSymlink:
			in.size = uint64(f.size)
			if f.inline != nil {
				in.nbytes = uint64(len(f.inline) - 21)
			}
			for _, p := range f.pieces {
				in.nbytes += p.len
			}
		}
		items = append(items, item{key{ino, typeInodeItem, 0}, enc(nil).inode(in)})
		if ino == firstFreeID {
			items = append(items, item{key{ino, typeInodeRef, ino}, enc(nil).u64(0).u16(2).str("..")})
		}
		// INODE_REF per parent, in parent order; names that would make
		// the item too big go to INODE_EXTREF.
		refs := append([]nameRef(nil), rec.refs...)
		sort.SliceStable(refs, func(i, j int) bool { return refs[i].parent < refs[j].parent })
		var ext []item
		for i := 0; i < len(refs); {
			j := i
			var body enc
			for ; j < len(refs) && refs[j].parent == refs[i].parent; j++ {
				r := refs[j]
				if len(body)+10+len(r.name) > maxItem {
					e := enc(nil).u64(r.parent).u64(r.index).u16(uint16(len(r.name))).str(r.name)
					ext = append(ext, item{key{ino, typeInodeExtref, extrefHash(r.parent, r.name)}, e})
					continue
				}
				body = body.u64(r.index).u16(uint16(len(r.name))).str(r.name)
			}
			items = append(items, item{key{ino, typeInodeRef, refs[i].parent}, body})
			i = j
		}
		items = append(items, mergeSameKey(ext)...)
		// Xattrs, grouped by name hash.
		if len(n.Xattrs) > 0 {
			names := make([]string, 0, len(n.Xattrs))
			for k := range n.Xattrs {
				names = append(names, k)
			}
			sort.Strings(names)
			var xs []item
			for _, name := range names {
				v := n.Xattrs[name]
				if len(name) == 0 || len(name) > 255 {
					return nil, fmt.Errorf("/%s: xattr name %q must be 1..255 bytes", rec.path, name)
				}
				if len(name)+len(v) > o.NodeSize-156 {
					return nil, fmt.Errorf("/%s: xattr %s is %d bytes with its name; at most %d fit in a %d-byte node", rec.path, name, len(name)+len(v), o.NodeSize-156, o.NodeSize)
				}
				xs = append(xs, item{key{ino, typeXattrItem, nameHash(name)}, enc(nil).dirEntry(key{}, ftXattr, name, v)})
			}
			items = append(items, mergeSameKey(xs)...)
		}
		if n.IsDir() {
			var ds []item
			for _, e := range rec.entries {
				ds = append(ds, item{key{ino, typeDirItem, nameHash(e.name)}, enc(nil).dirEntry(e.loc, e.typ, e.name, nil)})
			}
			items = append(items, mergeSameKey(ds)...)
			for _, e := range rec.entries {
				items = append(items, item{key{ino, typeDirIndex, e.index}, enc(nil).dirEntry(e.loc, e.typ, e.name, nil)})
			}
		}
		if f != nil {
			if f.inline != nil {
				items = append(items, item{key{ino, typeExtentData, 0}, f.inline})
			}
			for _, p := range f.pieces {
				b := enc(nil).u64(generation).u64(p.len).u8(0).u8(0).u16(0).u8(1)
				b = b.u64(p.addr).u64(p.len).u64(0).u64(p.len)
				items = append(items, item{key{ino, typeExtentData, uint64(p.off)}, b})
			}
		}
	}
	for _, it := range items {
		if len(it.data) > maxItem {
			return nil, fmt.Errorf("fs tree %d: item %v is %d bytes, more than a %d-byte node holds", sv.id, it.key, len(it.data), o.NodeSize)
		}
	}
	return items, nil
}

// mergeSameKey sorts items by key and joins the bodies of equal keys (hash
// collisions), as btrfs does.
func mergeSameKey(its []item) []item {
	sort.SliceStable(its, func(i, j int) bool { return its[i].key.less(its[j].key) })
	var out []item
	for _, it := range its {
		if k := len(out) - 1; k >= 0 && out[k].key == it.key {
			out[k].data = append(out[k].data, it.data...)
			continue
		}
		out = append(out, it)
	}
	return out
}

// rootDirItems are the items of an empty tree's root directory (the
// data-reloc tree).
func rootDirItems(t time.Time) []item {
	in := inodeItem{nlink: 1, mode: fstree.ModeDir | 0o755, atime: t, ctime: t, mtime: t, otime: t}
	return []item{
		{key{firstFreeID, typeInodeItem, 0}, enc(nil).inode(in)},
		{key{firstFreeID, typeInodeRef, firstFreeID}, enc(nil).u64(0).u16(2).str("..")},
	}
}
