// Package rootfs turns root file system sources into an *fstree.Tree:
// tarballs, .deb packages, host directories and kernel packages.
//
// Everything read from an archive is held in memory (roots are at most
// about 1 GB and the build host has far more RAM); sparse archive entries
// keep only their data blocks. Host directories are read lazily: content
// stays on disk until a writer opens it.
package rootfs

import (
	"archive/tar"
	"encoding/base64"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/compress"

	"github.com/mkimage/mkimage/internal/fstree"
)

// TarOptions tune how archive entries become tree entries.
type TarOptions struct {
	// Epoch is the time given to parent directories the archive does
	// not list itself (they are made 0755, owned by 0:0).
	Epoch time.Time
	// Keep, when set, selects the entries to read by their cleaned path
	// ("usr/bin/x", before any symlink is followed) and header; the
	// others are skipped. Parents of kept entries are created as needed.
	Keep func(p string, h *tar.Header) bool
	// FollowDirSymlinks makes entries whose parent path goes through a
	// symlink already in the tree land where that symlink points, as
	// dpkg does when unpacking into a merged-/usr root (lib -> usr/lib).
	// Targets resolve inside the tree as in a chroot: absolute targets
	// start at the tree's root and ".." stops there, so nothing can
	// leave the tree. A directory entry where the tree has a symlink to
	// a directory keeps the symlink. Off, a path through a symlink is an
	// error (the safe choice for tarballs).
	FollowDirSymlinks bool
	// Whiteouts reads the archive as an OCI image layer laid over the
	// tree: an entry ".wh.NAME" removes NAME that lower layers put there,
	// ".wh..wh..opq" empties its directory of everything lower layers put
	// there. Neither marker becomes an entry. The archive must not reach
	// through symlinks (FollowDirSymlinks off), so a whiteout cannot
	// remove anything outside the tree either.
	Whiteouts bool
	// Budget, when set, is how many bytes the archive may still add:
	// each entry's data and 512 bytes for its header are taken from it,
	// and an entry that would go below zero is an error. One counter
	// bounds several archives (an image's layers) against a compression
	// bomb or a header claiming terabytes.
	Budget *int64
}

// Tarball reads the tar archive at path (plain, gzip, xz or zstd, told
// apart by their magic bytes) into a new tree.
func Tarball(path string, opt TarOptions) (*fstree.Tree, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t := fstree.New(opt.Epoch)
	if err := AddTar(t, path, f, opt); err != nil {
		return nil, err
	}
	return t, nil
}

// AddTar reads a possibly compressed tar stream into t; name labels
// errors. Later entries replace earlier ones at the same path, as tar
// does when extracting. Entries that would land outside the tree (".."
// components, absolute paths, a parent that is a symlink or a file) and
// hard links to entries not (yet) in the tree are errors; symlinks are
// stored as they are and never followed.
func AddTar(t *fstree.Tree, name string, r io.Reader, opt TarOptions) error {
	dr, format, err := Decompress(r)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer dr.Close()
	label := name
	if format != "" {
		label = name + " (" + format + ")"
	}
	tail := &tailReader{r: dr}
	tr := tar.NewReader(tail)
	x := extractor{t: t, opt: opt}
	if opt.Whiteouts {
		x.layer = map[string]bool{}
	}
	for i := 0; ; i++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			// archive/tar also reports a stream cut at a block boundary
			// (or inside a PAX header) as a clean end; a real end has a
			// zero block.
			if !tail.zeroEnd() {
				return fmt.Errorf("%s: after %d entries: truncated (no end-of-archive marker)", label, i)
			}
			if i == 0 {
				return fmt.Errorf("%s: empty archive (no tar entries)", label)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: after %d entries: %w", label, i, unexpected(err))
		}
		if err := x.entry(hdr, tr); err != nil {
			return fmt.Errorf("%s: entry %q: %w", label, hdr.Name, err)
		}
	}
}

// tailReader remembers the last block read through it.
type tailReader struct {
	r    io.Reader
	last [512]byte
	n    int64
}

func (t *tailReader) Read(b []byte) (int, error) {
	n, err := t.r.Read(b)
	if n >= len(t.last) {
		copy(t.last[:], b[n-len(t.last):n])
	} else if n > 0 {
		copy(t.last[:], t.last[n:])
		copy(t.last[len(t.last)-n:], b[:n])
	}
	t.n += int64(n)
	return n, err
}

func (t *tailReader) zeroEnd() bool {
	return t.n >= int64(len(t.last)) && t.n%512 == 0 && t.last == [512]byte{}
}

// unexpected turns a bare io.EOF from inside a stream into
// io.ErrUnexpectedEOF: running out of bytes mid-archive is corruption.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Decompress returns a reader of the uncompressed stream, recognising
// gzip, xz and zstd by their magic bytes (anything else is read as is),
// and the name of the compression ("" for none).
func Decompress(r io.Reader) (io.ReadCloser, string, error) {
	rc, k, err := compress.Open(r)
	name := map[compress.Kind]string{compress.Gzip: "gzip", compress.XZ: "xz", compress.Zstd: "zstd", compress.LZ4: "lz4"}[k]
	if err != nil {
		return nil, name, fmt.Errorf("%s: %w", name, unexpected(err))
	}
	return rc, name, nil
}

// extractor turns tar entries into tree entries; the tarball and .deb
// paths share it so both apply the same checks.
type extractor struct {
	t   *fstree.Tree
	opt TarOptions
	// layer holds the paths this archive put, with Whiteouts: a marker
	// removes only what lower layers put.
	layer map[string]bool
}

// take takes n bytes from the budget.
func (x *extractor) take(n int64) error {
	b := x.opt.Budget
	if b == nil {
		return nil
	}
	if n < 0 || n > *b {
		return fmt.Errorf("%d more bytes are over the size bound (%d left)", n, *b)
	}
	*b -= n
	return nil
}

// entryPath cleans an archive member name: a leading "./" is how dpkg
// and many tarballs spell the root, anything absolute or with ".." is
// refused.
func entryPath(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("absolute path (entries must be relative to the root)")
	}
	for strings.HasPrefix(name, "./") {
		name = strings.TrimLeft(name[2:], "/")
	}
	if name == "." {
		name = ""
	}
	return fstree.Clean(name)
}

func (x *extractor) entry(hdr *tar.Header, r io.Reader) error {
	p, err := entryPath(hdr.Name)
	if err != nil {
		return err
	}
	if x.opt.Keep != nil && !x.opt.Keep(p, hdr) {
		return nil
	}
	if err := x.take(512); err != nil {
		return err
	}
	if x.layer != nil && strings.HasPrefix(path.Base(p), whiteoutPrefix) {
		return x.whiteout(p)
	}
	if hdr.Uid < 0 || hdr.Gid < 0 || int64(hdr.Uid) > 1<<32-1 || int64(hdr.Gid) > 1<<32-1 {
		return fmt.Errorf("owner %d:%d out of range", hdr.Uid, hdr.Gid)
	}
	if x.opt.FollowDirSymlinks && p != "" {
		dir, err := x.resolveDir(path.Dir(p))
		if err != nil {
			return err
		}
		p = path.Join(dir, path.Base(p))
		if hdr.Typeflag == tar.TypeDir {
			if n, err := x.resolveDir(p); err == nil && n != p {
				if d, ok := x.t.Lookup(n); ok && d.IsDir() {
					return nil
				}
			}
		}
	}
	if hdr.Typeflag == tar.TypeLink {
		return x.hardLink(p, hdr.Linkname)
	}
	n := &fstree.Inode{
		Mode:  uint32(hdr.Mode) & fstree.ModePerm,
		Uid:   uint32(hdr.Uid),
		Gid:   uint32(hdr.Gid),
		Mtime: hdr.ModTime,
		Atime: hdr.AccessTime,
		Ctime: hdr.ChangeTime,
	}
	// Archives without atime/ctime (ustar, or PAX without them) get the
	// mtime, the only time they have.
	if n.Atime.IsZero() {
		n.Atime = n.Mtime
	}
	if n.Ctime.IsZero() {
		n.Ctime = n.Mtime
	}
	if n.Xattrs, err = xattrs(hdr.PAXRecords); err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse:
		n.Mode |= fstree.ModeRegular
		if err := x.take(hdr.Size); err != nil {
			return err
		}
		sparse := hdr.Typeflag == tar.TypeGNUSparse || hdr.PAXRecords["GNU.sparse.major"] != "" || hdr.PAXRecords["GNU.sparse.map"] != ""
		if n.Content, err = readContent(r, hdr.Size, sparse); err != nil {
			return readError{err}
		}
	case tar.TypeDir:
		n.Mode |= fstree.ModeDir
		if p == "" {
			if x.layer != nil {
				x.layer[""] = true
			}
			n.Children = x.t.Root.Children
			x.t.Root = n
			return nil
		}
		// A directory listed again (or after its contents) keeps them.
		if old, ok := x.t.Lookup(p); ok && old.IsDir() {
			n.Children = old.Children
		} else {
			n.Children = map[string]*fstree.Inode{}
		}
	case tar.TypeSymlink:
		if hdr.Linkname == "" {
			return fmt.Errorf("symlink with an empty target")
		}
		// Linux gives every symlink mode 0777 whatever the archive
		// says; extraction by tar on the node would too.
		n.Mode = fstree.ModeSymlink | 0o777
		n.Target = hdr.Linkname
	case tar.TypeChar, tar.TypeBlock:
		n.Mode |= fstree.ModeChar
		if hdr.Typeflag == tar.TypeBlock {
			n.Mode = n.Mode&^fstree.ModeType | fstree.ModeBlock
		}
		if hdr.Devmajor < 0 || hdr.Devminor < 0 || hdr.Devmajor > 1<<32-1 || hdr.Devminor > 1<<32-1 {
			return fmt.Errorf("device number %d:%d out of range", hdr.Devmajor, hdr.Devminor)
		}
		n.Major, n.Minor = uint32(hdr.Devmajor), uint32(hdr.Devminor)
	case tar.TypeFifo:
		n.Mode |= fstree.ModeFIFO
	default:
		return fmt.Errorf("unsupported entry type %q", hdr.Typeflag)
	}
	if p == "" {
		return fmt.Errorf("the root must be a directory, not a %s", fstree.TypeName(n.Mode))
	}
	return x.put(p, n)
}

func (x *extractor) put(p string, n *fstree.Inode) error {
	if _, err := x.t.MkdirAll(path.Dir(p), x.opt.Epoch); err != nil {
		return err
	}
	if x.layer != nil {
		x.layer[p] = true
	}
	return x.t.Put(p, n)
}

// OCI whiteout markers (image-spec layer.md).
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// whiteout applies the marker at p. Its directory is looked up without
// following symlinks: a marker below a symlink names nothing in the tree.
func (x *extractor) whiteout(p string) error {
	dir, base := path.Split(p)
	dir = strings.TrimSuffix(dir, "/")
	d, ok := x.t.Lookup(dir)
	if !ok || !d.IsDir() {
		return nil
	}
	switch {
	case base == whiteoutOpaque:
		x.opaque(dir, d)
	case strings.HasPrefix(base, whiteoutPrefix+whiteoutPrefix):
		// Other ".wh..wh." names are aufs metadata (hard link
		// directories), nothing of the image's.
	default:
		name := strings.TrimPrefix(base, whiteoutPrefix)
		if name == "" || name == "." {
			return fmt.Errorf("whiteout of nothing")
		}
		if !x.layer[path.Join(dir, name)] {
			delete(d.Children, name)
		}
	}
	return nil
}

// opaque removes from directory d (at p) everything this layer did not
// put, at any depth.
func (x *extractor) opaque(p string, d *fstree.Inode) {
	for name, c := range d.Children {
		cp := path.Join(p, name)
		if !x.layer[cp] {
			delete(d.Children, name)
		} else if c.IsDir() {
			x.opaque(cp, c)
		}
	}
}

func (x *extractor) hardLink(p, target string) error {
	tp, err := entryPath(target)
	if err != nil {
		return fmt.Errorf("hard link to %q: %w", target, err)
	}
	if x.opt.FollowDirSymlinks && tp != "" {
		dir, err := x.resolveDir(path.Dir(tp))
		if err != nil {
			return fmt.Errorf("hard link to %q: %w", target, err)
		}
		tp = path.Join(dir, path.Base(tp))
	}
	n, ok := x.t.Lookup(tp)
	switch {
	case !ok:
		return fmt.Errorf("hard link to %q, which is not in the archive before it", target)
	case n.IsDir():
		return fmt.Errorf("hard link to directory %q", target)
	}
	return x.put(p, n)
}

// resolveDir follows symlinks in dir inside the tree (chroot
// semantics); see fstree.Tree.Resolve.
func (x *extractor) resolveDir(dir string) (string, error) { return x.t.Resolve(dir) }

// xattrs collects extended attributes from PAX records: GNU tar and star
// write "SCHILY.xattr.NAME" with the raw value, bsdtar writes
// "LIBARCHIVE.xattr.NAME" (NAME URL-encoded) with a base64 value.
func xattrs(recs map[string]string) (map[string][]byte, error) {
	var xs map[string][]byte
	for k, v := range recs {
		var name string
		var val []byte
		switch {
		case strings.HasPrefix(k, "SCHILY.xattr."):
			name, val = strings.TrimPrefix(k, "SCHILY.xattr."), []byte(v)
		case strings.HasPrefix(k, "LIBARCHIVE.xattr."):
			var err error
			if name, err = url.QueryUnescape(strings.TrimPrefix(k, "LIBARCHIVE.xattr.")); err != nil {
				return nil, fmt.Errorf("PAX record %q: %w", k, err)
			}
			if val, err = base64.StdEncoding.DecodeString(v); err != nil {
				if val, err = base64.RawStdEncoding.DecodeString(v); err != nil {
					return nil, fmt.Errorf("PAX record %q: %w", k, err)
				}
			}
		default:
			continue
		}
		if name == "" {
			return nil, fmt.Errorf("PAX record %q: empty xattr name", k)
		}
		if xs == nil {
			xs = map[string][]byte{}
		}
		xs[name] = val
	}
	return xs, nil
}

// readError marks a failure reading the archive (as opposed to a bad
// entry); it reads the same in messages.
type readError struct{ err error }

func (e readError) Error() string { return e.err.Error() }
func (e readError) Unwrap() error { return e.err }

// readContent reads one entry's data. Sparse entries keep only their
// non-zero blocks so a mostly empty disk image costs little memory.
func readContent(r io.Reader, size int64, sparse bool) (fstree.Content, error) {
	if !sparse {
		b, err := fstree.ReadBytes(r, size)
		if err != nil {
			return nil, fmt.Errorf("reading the %d bytes its header gives: %w", size, unexpected(err))
		}
		return b, nil
	}
	return readSparse(r, size)
}
