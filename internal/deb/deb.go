// Package deb reads Debian binary packages (.deb) in pure Go: the ar
// container, the control fields and the data.tar stream, so that packages
// can be unpacked into a file tree without dpkg and without running
// anything from the package.
package deb

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Package is an opened .deb. It keeps only the member index and the parsed
// control fields; data.tar is streamed from the file on every Data call.
type Package struct {
	Path    string
	control Control
	members []member
}

type member struct {
	name   string
	offset int64 // of the member's data in the file
	size   int64
}

// Open reads the ar index and the control fields of the .deb at path.
func Open(path string) (*Package, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	members, err := readAr(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	p := &Package{Path: path, members: members}
	if len(members) == 0 || members[0].name != "debian-binary" {
		return nil, fmt.Errorf("%s: not a Debian package: no debian-binary member first", path)
	}
	vb := make([]byte, min(members[0].size, 64))
	if _, err := f.ReadAt(vb, members[0].offset); err != nil {
		return nil, fmt.Errorf("%s: debian-binary: %w", path, err)
	}
	if !bytes.HasPrefix(vb, []byte("2.")) {
		return nil, fmt.Errorf("%s: unsupported format version %q in debian-binary (want 2.x)", path, strings.TrimSpace(string(vb)))
	}
	cm, err := p.member("control.tar")
	if err != nil {
		return nil, err
	}
	var ctrl []byte
	err = p.walkTar(f, cm, func(hdr *tar.Header, r io.Reader) error {
		if strings.TrimPrefix(hdr.Name, "./") == "control" && hdr.Typeflag == tar.TypeReg {
			ctrl, err = io.ReadAll(r)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if ctrl == nil {
		return nil, fmt.Errorf("%s: %s: no control file", path, cm.name)
	}
	if p.control, err = ParseControl(ctrl); err != nil {
		return nil, fmt.Errorf("%s: %s: control: %w", path, cm.name, err)
	}
	if _, err := p.member("data.tar"); err != nil {
		return nil, err
	}
	return p, nil
}

// Control returns the package's control fields.
func (p *Package) Control() Control { return p.control }

// DataMember returns the name of the data member ("data.tar.xz", ...).
func (p *Package) DataMember() string {
	m, _ := p.member("data.tar")
	return m.name
}

// Data calls fn for every entry of data.tar in archive order. r reads the
// entry's content and is valid only during the call. Names are as stored
// (usually "./usr/bin/x"). An error from fn stops the walk and is returned
// as is.
func (p *Package) Data(fn func(hdr *tar.Header, r io.Reader) error) error {
	return p.walkMember("data.tar", fn)
}

// ControlFiles calls fn for every entry of control.tar (control,
// md5sums, conffiles, maintainer scripts) in archive order, like Data.
func (p *Package) ControlFiles(fn func(hdr *tar.Header, r io.Reader) error) error {
	return p.walkMember("control.tar", fn)
}

// walkMember opens the package and walks the tar member named prefix.*.
func (p *Package) walkMember(prefix string, fn func(*tar.Header, io.Reader) error) error {
	m, err := p.member(prefix)
	if err != nil {
		return err
	}
	f, err := os.Open(p.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	return p.walkTar(f, m, fn)
}

// OpenData returns the decompressed data.tar stream, for callers that
// feed it to a tar reader of their own; Close releases the file.
func (p *Package) OpenData() (io.ReadCloser, error) {
	m, err := p.member("data.tar")
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p.Path)
	if err != nil {
		return nil, err
	}
	r, err := decompress(m.name, io.NewSectionReader(f, m.offset, m.size))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %s: %w", p.Path, m.name, err)
	}
	return dataReader{r, f}, nil
}

type dataReader struct {
	io.ReadCloser
	f *os.File
}

func (d dataReader) Close() error {
	d.ReadCloser.Close()
	return d.f.Close()
}

func (p *Package) walkTar(f *os.File, m member, fn func(*tar.Header, io.Reader) error) error {
	r, err := decompress(m.name, io.NewSectionReader(f, m.offset, m.size))
	if err != nil {
		return fmt.Errorf("%s: %s: %w", p.Path, m.name, err)
	}
	defer r.Close()
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %s: %w", p.Path, m.name, eof(err))
		}
		if err := fn(hdr, errReader{tr, m.name}); err != nil {
			var ce readError
			if errors.As(err, &ce) {
				return fmt.Errorf("%s: %s: entry %q: %w", p.Path, m.name, hdr.Name, ce.err)
			}
			return err
		}
	}
}

// readError marks a failure reading the archive itself (not the caller's
// own failure), so walkTar can name the file and member.
type readError struct{ err error }

func (e readError) Error() string { return e.err.Error() }
func (e readError) Unwrap() error { return e.err }

type errReader struct {
	r    io.Reader
	name string
}

func (e errReader) Read(b []byte) (int, error) {
	n, err := e.r.Read(b)
	if err != nil && err != io.EOF {
		err = readError{eof(err)}
	}
	return n, err
}

// eof turns the bare io.EOF some decoders return mid-stream into
// io.ErrUnexpectedEOF: inside a member, running out of bytes is an error.
func eof(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (p *Package) member(prefix string) (member, error) {
	for _, m := range p.members {
		if m.name == prefix || strings.HasPrefix(m.name, prefix+".") {
			return m, nil
		}
	}
	return member{}, fmt.Errorf("%s: not a Debian package: no %s member", p.Path, prefix)
}

// decompress picks the decoder by the member's name suffix, as dpkg does.
func decompress(name string, r io.Reader) (io.ReadCloser, error) {
	switch {
	case strings.HasSuffix(name, ".tar"):
		return io.NopCloser(r), nil
	case strings.HasSuffix(name, ".tar.gz"):
		z, err := gzip.NewReader(r)
		if err != nil {
			return nil, eof(err)
		}
		return z, nil
	case strings.HasSuffix(name, ".tar.xz"):
		z, err := xz.NewReader(bufio.NewReaderSize(r, 1<<16))
		if err != nil {
			return nil, eof(err)
		}
		return io.NopCloser(z), nil
	case strings.HasSuffix(name, ".tar.zst"):
		z, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		return z.IOReadCloser(), nil
	}
	return nil, fmt.Errorf("unsupported compression")
}

const arMagic = "!<arch>\n"

// readAr indexes the members of an ar archive (the common format dpkg
// writes; GNU "name/" and BSD "#1/len" names are both accepted).
func readAr(f *os.File, size int64) ([]member, error) {
	head := make([]byte, len(arMagic))
	if size < int64(len(arMagic)) {
		return nil, fmt.Errorf("not a Debian package: no ar header (file is %d bytes)", size)
	}
	if _, err := f.ReadAt(head, 0); err != nil || string(head) != arMagic {
		return nil, fmt.Errorf("not a Debian package: no ar header (starts with %q)", head)
	}
	var ms []member
	off := int64(len(arMagic))
	for off < size {
		if off%2 == 1 {
			off++ // members start on even offsets
			if off == size {
				break
			}
		}
		var h [60]byte
		if _, err := f.ReadAt(h[:], off); err != nil {
			return nil, fmt.Errorf("ar member header at offset %d: %w", off, eof(err))
		}
		if string(h[58:60]) != "`\n" {
			return nil, fmt.Errorf("ar member header at offset %d: bad magic %q", off, h[58:60])
		}
		name := strings.TrimRight(string(h[0:16]), " ")
		sz, err := strconv.ParseInt(strings.TrimSpace(string(h[48:58])), 10, 64)
		if err != nil || sz < 0 {
			return nil, fmt.Errorf("ar member %q: bad size %q", name, strings.TrimSpace(string(h[48:58])))
		}
		data := off + 60
		if strings.HasPrefix(name, "#1/") {
			n, err := strconv.Atoi(name[3:])
			if err != nil || n < 0 || int64(n) > sz {
				return nil, fmt.Errorf("ar member %q: bad BSD name length", name)
			}
			nb := make([]byte, n)
			if _, err := f.ReadAt(nb, data); err != nil {
				return nil, fmt.Errorf("ar member %q: %w", name, eof(err))
			}
			name = strings.TrimRight(string(nb), "\x00")
			data += int64(n)
			sz -= int64(n)
		} else {
			name = strings.TrimSuffix(name, "/")
		}
		if data+sz > size {
			return nil, fmt.Errorf("ar member %q: truncated (needs %d bytes, file has %d)", name, data+sz, size)
		}
		ms = append(ms, member{name: name, offset: data, size: sz})
		off = data + sz
	}
	return ms, nil
}
