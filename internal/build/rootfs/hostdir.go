package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/fstree"
)

// HostOptions tune how a host directory is read.
type HostOptions struct {
	// RootOwned maps every owner to 0:0. Files keep the uid and gid they
	// have on disk otherwise, so a tree an ordinary user checked out
	// would be owned by that user in the image; overlays kept in a
	// source repository want RootOwned.
	RootOwned bool
	// MtimeAsAtime gives every inode its mtime as atime. Reading a file
	// moves its atime (relatime: the first read after a write), so an
	// image built from what the host holds must not take atimes from it,
	// or reading the inputs once changes the next build's bytes.
	MtimeAsAtime bool
}

// HostDir reads the directory dir into a tree without following any
// symlink: the root takes dir's own owner, mode and times. Times keep
// their nanoseconds; xattrs, device numbers and hard links (by device
// and inode number) are kept; file content is read from dir only when a
// writer opens it, and sparse files report their data extents.
func HostDir(dir string, opt HostOptions) (*fstree.Tree, error) {
	h := hostReader{opt: opt, links: map[devIno]*fstree.Inode{}}
	root, err := h.read(dir)
	if err != nil {
		return nil, err
	}
	if !root.IsDir() {
		return nil, fmt.Errorf("%s: not a directory (it is a %s)", dir, fstree.TypeName(root.Mode))
	}
	return &fstree.Tree{Root: root}, nil
}

type devIno struct{ dev, ino uint64 }

type hostReader struct {
	opt   HostOptions
	links map[devIno]*fstree.Inode
}

func (h *hostReader) read(p string) (*fstree.Inode, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return nil, &os.PathError{Op: "lstat", Path: p, Err: err}
	}
	key := devIno{uint64(st.Dev), st.Ino}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if !isDir && st.Nlink > 1 {
		if n, ok := h.links[key]; ok {
			return n, nil
		}
	}
	n := &fstree.Inode{
		Mode:  st.Mode & (fstree.ModeType | fstree.ModePerm),
		Uid:   st.Uid,
		Gid:   st.Gid,
		Atime: time.Unix(st.Atim.Unix()),
		Mtime: time.Unix(st.Mtim.Unix()),
		Ctime: time.Unix(st.Ctim.Unix()),
	}
	if h.opt.RootOwned {
		n.Uid, n.Gid = 0, 0
	}
	if h.opt.MtimeAsAtime {
		n.Atime = n.Mtime
	}
	var err error
	if n.Xattrs, err = hostXattrs(p); err != nil {
		return nil, err
	}
	switch n.Type() {
	case fstree.ModeDir:
		ents, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		n.Children = make(map[string]*fstree.Inode, len(ents))
		for _, e := range ents {
			c, err := h.read(filepath.Join(p, e.Name()))
			if err != nil {
				return nil, err
			}
			n.Children[e.Name()] = c
		}
	case fstree.ModeRegular:
		if n.Content, err = hostContent(p, &st); err != nil {
			return nil, err
		}
	case fstree.ModeSymlink:
		if n.Target, err = os.Readlink(p); err != nil {
			return nil, err
		}
	case fstree.ModeChar, fstree.ModeBlock:
		n.Major, n.Minor = unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))
	case fstree.ModeFIFO, fstree.ModeSocket:
	default:
		return nil, fmt.Errorf("%s: unknown file type %#o", p, n.Type())
	}
	if !isDir && st.Nlink > 1 {
		h.links[key] = n
	}
	return n, nil
}

// hostXattrs reads every extended attribute of p (not following a
// symlink). A filesystem without xattr support simply has none.
func hostXattrs(p string) (map[string][]byte, error) {
	size, err := unix.Llistxattr(p, nil)
	if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
		return nil, nil
	}
	if err != nil {
		return nil, &os.PathError{Op: "llistxattr", Path: p, Err: err}
	}
	if size == 0 {
		return nil, nil
	}
	buf := make([]byte, size)
	if size, err = unix.Llistxattr(p, buf); err != nil {
		return nil, &os.PathError{Op: "llistxattr", Path: p, Err: err}
	}
	xs := map[string][]byte{}
	for _, name := range splitNul(buf[:size]) {
		v, err := lgetxattr(p, name)
		if errors.Is(err, unix.ENODATA) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, &os.PathError{Op: "lgetxattr " + name, Path: p, Err: err}
		}
		xs[name] = v
	}
	return xs, nil
}

func lgetxattr(p, name string) ([]byte, error) {
	for {
		size, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, size)
		n, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // grew between the two calls
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

func splitNul(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == 0 {
			if i > start {
				out = append(out, string(b[start:i]))
			}
			start = i + 1
		}
	}
	return out
}

// hostContent is lazy content of a host file; files with fewer
// allocated blocks than their size are asked for their data extents.
func hostContent(p string, st *unix.Stat_t) (fstree.Content, error) {
	hf := fstree.HostFile{Path: p, Length: st.Size}
	if st.Size == 0 || st.Blocks*512 >= st.Size {
		return hf, nil
	}
	ext, err := dataExtents(p, st.Size)
	if err != nil {
		return nil, err
	}
	return &HostSparse{HostFile: hf, Data: ext}, nil
}

// HostSparse is a sparse host file: read like a HostFile, with its data
// extents as found by SEEK_DATA/SEEK_HOLE when the tree was read.
type HostSparse struct {
	fstree.HostFile
	Data []fstree.Extent
}

func (s *HostSparse) Extents() []fstree.Extent { return s.Data }

func dataExtents(p string, size int64) ([]fstree.Extent, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fd := int(f.Fd())
	var ext []fstree.Extent
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if err != nil {
			return nil, &os.PathError{Op: "seek data", Path: p, Err: err}
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return nil, &os.PathError{Op: "seek hole", Path: p, Err: err}
		}
		hole = min(hole, size)
		if hole > data {
			ext = append(ext, fstree.Extent{Offset: data, Length: hole - data})
		}
		off = hole
	}
	return ext, nil
}
