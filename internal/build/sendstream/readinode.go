package sendstream

import (
	"bytes"
	"fmt"
	"math"
	"strings"

	"github.com/mkimage/mkimage/internal/fstree"
)

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
	if err := r.fits(off, int64(len(data))); err != nil {
		return err
	}
	if err := f.write(off, data); err != nil {
		return err
	}
	r.dropXattr(n, capability)
	return nil
}

// fits checks that n bytes at off stay within the file size limit.
func (r *reader) fits(off, n int64) error {
	if off > r.lim.MaxFileSize-n {
		return fmt.Errorf("%d bytes at offset %d pass the file size limit of %d", n, off, r.lim.MaxFileSize)
	}
	return nil
}

// clone copies a range of a file sent before, as a full `btrfs send`
// does for data two files share.
func (r *reader) clone() error {
	d, maxSize := r.dec, r.lim.MaxFileSize
	p, off, length := d.str(attrPath), d.limit(attrFileOffset, maxSize), d.limit(attrCloneLen, maxSize)
	src, srcOff := d.str(attrClonePath), d.limit(attrCloneOffset, maxSize)
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
	if err := r.fits(off, length); err != nil {
		return err
	}
	switch {
	case srcOff > sf.size-length:
		return fmt.Errorf("clone source %q: %d bytes at offset %d pass its end (%d)", "/"+src, length, srcOff, sf.size)
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
