// Package deb reads Debian binary packages (.deb) in pure Go: the ar
// container, the control fields and the data.tar stream, so that packages
// can be unpacked into a file tree without dpkg and without running
// anything from the package.
package deb

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/mkimage/mkimage/internal/compress"
)

// Package is an opened .deb. It keeps only the member index and the parsed
// control fields; data.tar is streamed from the file on every Data call.
type Package struct {
	Path    string
	control Control
	members []member
	// ra is the package's bytes when it was given by Read; Open's
	// packages reopen Path instead of holding a file open.
	ra io.ReaderAt
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
	return read(f, st.Size(), path)
}

// Read reads a .deb of size bytes from r, like Open; name labels it in
// errors and is the Package's Path. r must stay readable while the
// Package is used.
func Read(r io.ReaderAt, size int64, name string) (*Package, error) {
	p, err := read(r, size, name)
	if err != nil {
		return nil, err
	}
	p.ra = r
	return p, nil
}

func read(f io.ReaderAt, size int64, path string) (*Package, error) {
	members, err := readAr(f, size)
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
			// Real control files are a few KiB; a bigger one is not
			// read into memory.
			if ctrl, err = io.ReadAll(io.LimitReader(r, maxControl+1)); err == nil && len(ctrl) > maxControl {
				return fmt.Errorf("%s: %s: control file is larger than %d bytes", path, cm.name, maxControl)
			}
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
	if p.ra != nil {
		return p.walkTar(p.ra, m, fn)
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
	var f io.ReaderAt = p.ra
	if f == nil {
		fh, err := os.Open(p.Path)
		if err != nil {
			return nil, err
		}
		f = fh
	}
	r, err := p.open(f, m)
	if err != nil {
		if c, ok := f.(io.Closer); ok && p.ra == nil {
			c.Close()
		}
		return nil, err
	}
	return dataReader{r, f, p.ra == nil}, nil
}

type dataReader struct {
	io.ReadCloser
	f   io.ReaderAt
	own bool // f was opened for this reader
}

func (d dataReader) Close() error {
	d.ReadCloser.Close()
	if c, ok := d.f.(io.Closer); ok && d.own {
		return c.Close()
	}
	return nil
}

// open returns member m decompressed, held to its size limit.
func (p *Package) open(f io.ReaderAt, m member) (io.ReadCloser, error) {
	r, err := decompress(m.name, io.NewSectionReader(f, m.offset, m.size))
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", p.Path, m.name, err)
	}
	lim, why := p.limit(m)
	return &boundedReader{ReadCloser: r, left: lim, limit: lim, why: why}, nil
}

// A .deb from outside may be a decompression bomb: a small member that
// expands to more than memory or disk can take. A member may decompress
// to maxRatio times its size, at least minLimit (real packages stay
// under 20); data.tar also to twice the Installed-Size the package
// declares plus tarSlack for tar headers and padding (dpkg-gencontrol
// counts every file's size, so real packages stay just above 1).
const (
	maxRatio   = 1000
	minLimit   = 64 << 20
	tarSlack   = 4 << 20
	maxControl = 1 << 20
)

// limit returns how many bytes member m may decompress to, and why.
func (p *Package) limit(m member) (int64, string) {
	lim, why := int64(math.MaxInt64), "no limit"
	if m.size < math.MaxInt64/maxRatio {
		lim, why = max(minLimit, maxRatio*m.size), fmt.Sprintf("%d times its %d bytes", maxRatio, m.size)
	}
	if !strings.HasPrefix(m.name, "data.tar") {
		return lim, why
	}
	is := p.control.Get("Installed-Size")
	if kib, err := strconv.ParseInt(is, 10, 64); err == nil && kib >= 0 && kib < 1<<40 {
		if l := 2*kib<<10 + tarSlack; l < lim {
			lim, why = l, fmt.Sprintf("twice the package's Installed-Size of %d KiB, plus %d MiB", kib, tarSlack>>20)
		}
	}
	return lim, why
}

// boundedReader fails once more than limit bytes have come through.
type boundedReader struct {
	io.ReadCloser
	left, limit int64
	why         string
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, b.err()
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n, b.err()
	}
	return n, err
}

func (b *boundedReader) err() error {
	return fmt.Errorf("decompresses to more than %d bytes (%s): refused as a decompression bomb", b.limit, b.why)
}

func (p *Package) walkTar(f io.ReaderAt, m member, fn func(*tar.Header, io.Reader) error) error {
	r, err := p.open(f, m)
	if err != nil {
		return err
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
	if strings.HasSuffix(name, ".tar") {
		return io.NopCloser(r), nil
	}
	k := compress.KindOf(name)
	if !strings.HasSuffix(name, ".tar"+k.Ext()) || k == compress.LZ4 {
		return nil, fmt.Errorf("unsupported compression")
	}
	z, err := compress.NewReader(r, k)
	if err != nil {
		return nil, eof(err)
	}
	return z, nil
}

const arMagic = "!<arch>\n"

// readAr indexes the members of an ar archive (the common format dpkg
// writes; GNU "name/" and BSD "#1/len" names are both accepted).
func readAr(f io.ReaderAt, size int64) ([]member, error) {
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
		// Before anything is allocated for it: the size is the
		// header's claim.
		if sz > size-data {
			return nil, fmt.Errorf("ar member %q: truncated (needs %d bytes from offset %d, file has %d)", name, sz, data, size)
		}
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
		ms = append(ms, member{name: name, offset: data, size: sz})
		off = data + sz
	}
	return ms, nil
}
