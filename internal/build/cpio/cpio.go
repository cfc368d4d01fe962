// Package cpio writes and reads an fstree.Tree as a newc ("070701") cpio
// archive, the format the Linux kernel unpacks as an initramfs.
//
// It is written here rather than on github.com/cavaliergopher/cpio because
// that package (v1.0.1) neither writes nor reads device numbers (a
// /dev/console node would come out as 0:0) and its checksum path changes
// a package-level magic slice.
//
// Output is a pure function of the tree: entries in fstree.Walk order
// (parents first, names sorted), inode numbers counted from 1 in that
// order, owners, modes and mtimes as the tree holds them.
package cpio

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/fstree"
)

const (
	magic      = "070701"
	headerSize = 110
	trailer    = "TRAILER!!!"
)

type header struct {
	ino, mode, uid, gid, nlink, mtime, size  uint32
	devMajor, devMinor, rdevMajor, rdevMinor uint32
	name                                     string
}

func (h *header) write(w io.Writer) error {
	var b bytes.Buffer
	b.WriteString(magic)
	for _, v := range []uint32{h.ino, h.mode, h.uid, h.gid, h.nlink, h.mtime, h.size,
		h.devMajor, h.devMinor, h.rdevMajor, h.rdevMinor, uint32(len(h.name) + 1), 0} {
		fmt.Fprintf(&b, "%08x", v)
	}
	b.WriteString(h.name)
	b.WriteByte(0)
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// Write writes t to w as a newc archive with its trailer.
func Write(w io.Writer, t *fstree.Tree) error {
	if err := t.Validate(); err != nil {
		return err
	}
	// Hard links: every name gets the inode's number; the data goes with
	// the last name, as GNU cpio writes it and the kernel accepts it.
	type inodeInfo struct {
		ino   uint32
		names int
		seen  int
	}
	inodes := map[*fstree.Inode]*inodeInfo{}
	next := uint32(1)
	t.Walk(func(p string, n *fstree.Inode) error {
		if p == "" {
			return nil
		}
		ii := inodes[n]
		if ii == nil {
			ii = &inodeInfo{ino: next}
			next++
			inodes[n] = ii
		}
		ii.names++
		return nil
	})
	bw := bufio.NewWriterSize(w, 1<<16)
	err := t.Walk(func(p string, n *fstree.Inode) error {
		name := p
		if p == "" {
			// The kernel needs no entry for the root; one named "."
			// would set the root's mode, which the kernel ignores too.
			return nil
		}
		ii := inodes[n]
		ii.seen++
		h := header{
			ino: ii.ino, mode: n.Mode, uid: n.Uid, gid: n.Gid,
			nlink: 1, mtime: uint32(n.Mtime.Unix()), name: name,
		}
		if n.IsDir() {
			h.nlink = 2
		} else if ii.names > 1 {
			h.nlink = uint32(ii.names)
		}
		var data io.ReadCloser
		switch n.Type() {
		case fstree.ModeRegular:
			if ii.seen == ii.names && n.Size() > 0 {
				if n.Size() > 1<<32-1 {
					return fmt.Errorf("/%s: %d bytes is too large for newc cpio", p, n.Size())
				}
				h.size = uint32(n.Size())
				r, err := n.Content.Open()
				if err != nil {
					return fmt.Errorf("/%s: %w", p, err)
				}
				data = r
			}
		case fstree.ModeSymlink:
			h.size = uint32(len(n.Target))
			data = io.NopCloser(strings.NewReader(n.Target))
		case fstree.ModeChar, fstree.ModeBlock:
			h.rdevMajor, h.rdevMinor = n.Major, n.Minor
		}
		if err := h.write(bw); err != nil {
			return err
		}
		if data != nil {
			got, err := io.Copy(bw, data)
			data.Close()
			if err != nil {
				return fmt.Errorf("/%s: %w", p, err)
			}
			if got != int64(h.size) {
				return fmt.Errorf("/%s: read %d bytes, expected %d", p, got, h.size)
			}
			if pad := (4 - got%4) % 4; pad > 0 {
				bw.Write(make([]byte, pad))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := (&header{nlink: 1, name: trailer}).write(bw); err != nil {
		return err
	}
	return bw.Flush()
}

// Read reads a newc archive into a tree. Entries may come in any order
// and name their parents implicitly (missing directories are made, mode
// 0755, at epoch). A later entry for the same path replaces the earlier
// one, as when the kernel unpacks concatenated archives.
func Read(r io.Reader) (*fstree.Tree, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	t := fstree.New(time.Unix(0, 0))
	type key struct{ ino, maj, min uint32 }
	links := map[key]*fstree.Inode{}
	var off int64
	for {
		h, n, err := readHeader(br)
		if err != nil {
			return nil, fmt.Errorf("cpio entry at byte %d: %w", off, err)
		}
		off += n
		if h.name == trailer {
			return t, nil
		}
		data, err := fstree.ReadBytes(br, int64(h.size))
		if err != nil {
			return nil, fmt.Errorf("cpio entry %q: header says %d bytes of data: %w", h.name, h.size, err)
		}
		pad := (4 - int64(h.size)%4) % 4
		if _, err := br.Discard(int(pad)); err != nil {
			return nil, fmt.Errorf("cpio entry %q: %w", h.name, err)
		}
		off += int64(h.size) + pad
		name, err := fstree.Clean(strings.TrimPrefix(h.name, "/"))
		if err != nil {
			return nil, fmt.Errorf("cpio entry %q: %w", h.name, err)
		}
		mt := time.Unix(int64(h.mtime), 0)
		node := &fstree.Inode{Mode: h.mode, Uid: h.uid, Gid: h.gid, Atime: mt, Mtime: mt, Ctime: mt}
		switch h.mode & fstree.ModeType {
		case fstree.ModeDir:
			node.Children = map[string]*fstree.Inode{}
			if old, ok := t.Lookup(name); ok && old.IsDir() {
				old.Mode, old.Uid, old.Gid, old.Atime, old.Mtime, old.Ctime = node.Mode, node.Uid, node.Gid, mt, mt, mt
				continue
			}
		case fstree.ModeRegular:
			k := key{h.ino, h.devMajor, h.devMinor}
			if prev, ok := links[k]; ok && h.nlink > 1 {
				if len(data) > 0 {
					prev.Content = fstree.Bytes(data)
				}
				node = prev
			} else {
				node.Content = fstree.Bytes(data)
				if h.nlink > 1 {
					links[k] = node
				}
			}
		case fstree.ModeSymlink:
			node.Target = string(data)
		case fstree.ModeChar, fstree.ModeBlock:
			node.Major, node.Minor = h.rdevMajor, h.rdevMinor
		case fstree.ModeFIFO, fstree.ModeSocket:
		default:
			return nil, fmt.Errorf("cpio entry %q: unknown file type %#o", h.name, h.mode&fstree.ModeType)
		}
		if name == "" {
			continue // "." sets nothing we keep
		}
		if _, err := t.MkdirAll(path.Dir(name), time.Unix(0, 0)); err != nil {
			return nil, fmt.Errorf("cpio entry %q: %w", h.name, err)
		}
		if err := t.Put(name, node); err != nil {
			return nil, fmt.Errorf("cpio entry %q: %w", h.name, err)
		}
	}
}

func readHeader(r io.Reader) (*header, int64, error) {
	var b [headerSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		if err == io.EOF {
			return nil, 0, fmt.Errorf("archive ends without a %s entry", trailer)
		}
		return nil, 0, err
	}
	if string(b[:6]) != magic && string(b[:6]) != "070702" {
		return nil, 0, fmt.Errorf("bad magic %q (want newc %s)", b[:6], magic)
	}
	var f [13]uint32
	for i := range f {
		v, err := strconv.ParseUint(string(b[6+8*i:14+8*i]), 16, 32)
		if err != nil {
			return nil, 0, fmt.Errorf("bad header field %d: %q", i, b[6+8*i:14+8*i])
		}
		f[i] = uint32(v)
	}
	nameSize := f[11]
	if nameSize < 1 || nameSize > 4096 {
		return nil, 0, fmt.Errorf("bad name size %d", nameSize)
	}
	padded := (headerSize + int(nameSize) + 3) &^ 3
	name := make([]byte, padded-headerSize)
	if _, err := io.ReadFull(r, name); err != nil {
		return nil, 0, err
	}
	h := &header{ino: f[0], mode: f[1], uid: f[2], gid: f[3], nlink: f[4], mtime: f[5], size: f[6],
		devMajor: f[7], devMinor: f[8], rdevMajor: f[9], rdevMinor: f[10],
		name: string(name[:nameSize-1])}
	return h, int64(padded), nil
}
