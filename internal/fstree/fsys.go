package fstree

import (
	"io"
	"io/fs"
	"path"
	"sort"
	"time"
)

// FS returns a read-only io/fs view of the tree, so code written for
// fs.FS (module resolution, globbing) can read a tree held in memory.
// Symlinks are reported as such and not followed.
func (t *Tree) FS() fs.FS { return treeFS{t} }

type treeFS struct{ t *Tree }

func (f treeFS) lookup(op, name string) (*Inode, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	n, ok := f.t.Lookup(name)
	if !ok {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	return n, nil
}

func (f treeFS) Open(name string) (fs.File, error) {
	n, err := f.lookup("open", name)
	if err != nil {
		return nil, err
	}
	info := fileInfo{name: path.Base(name), n: n}
	if n.IsDir() {
		return &dirFile{info: info}, nil
	}
	var r io.ReadCloser = io.NopCloser(eofReader{})
	if n.Type() == ModeRegular && n.Content != nil {
		if r, err = n.Content.Open(); err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
	}
	return &regFile{info: info, r: r}, nil
}

func (f treeFS) ReadDir(name string) ([]fs.DirEntry, error) {
	n, err := f.lookup("readdir", name)
	if err != nil {
		return nil, err
	}
	return (&dirFile{info: fileInfo{n: n}}).ReadDir(-1)
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

type fileInfo struct {
	name string
	n    *Inode
}

func (i fileInfo) Name() string       { return i.name }
func (i fileInfo) Size() int64        { return i.n.Size() }
func (i fileInfo) ModTime() time.Time { return i.n.Mtime }
func (i fileInfo) IsDir() bool        { return i.n.IsDir() }
func (i fileInfo) Sys() any           { return i.n }
func (i fileInfo) Mode() fs.FileMode {
	m := fs.FileMode(i.n.Mode & 0o777)
	switch i.n.Type() {
	case ModeDir:
		m |= fs.ModeDir
	case ModeSymlink:
		m |= fs.ModeSymlink
	case ModeChar:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case ModeBlock:
		m |= fs.ModeDevice
	case ModeFIFO:
		m |= fs.ModeNamedPipe
	case ModeSocket:
		m |= fs.ModeSocket
	}
	return m
}
func (i fileInfo) Type() fs.FileMode          { return i.Mode().Type() }
func (i fileInfo) Info() (fs.FileInfo, error) { return i, nil }

type regFile struct {
	info fileInfo
	r    io.ReadCloser
}

func (f *regFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *regFile) Read(b []byte) (int, error) { return f.r.Read(b) }
func (f *regFile) Close() error               { return f.r.Close() }

type dirFile struct {
	info    fileInfo
	entries []fs.DirEntry
	read    bool
}

func (d *dirFile) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *dirFile) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.name, Err: fs.ErrInvalid}
}
func (d *dirFile) Close() error { return nil }

func (d *dirFile) ReadDir(count int) ([]fs.DirEntry, error) {
	if !d.read {
		names := d.info.n.Names()
		sort.Strings(names)
		for _, name := range names {
			d.entries = append(d.entries, fileInfo{name: name, n: d.info.n.Children[name]})
		}
		d.read = true
	}
	if count <= 0 {
		out := d.entries
		d.entries = nil
		return out, nil
	}
	if len(d.entries) == 0 {
		return nil, io.EOF
	}
	n := min(count, len(d.entries))
	out := d.entries[:n]
	d.entries = d.entries[n:]
	return out, nil
}
