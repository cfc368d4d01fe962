package debroot

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// arMember is one member of a .deb's ar container.
type arMember struct {
	name         string
	offset, size int64
}

// readAr lists the members of an ar archive.
func readAr(f io.ReaderAt, size int64) ([]arMember, error) {
	magic := make([]byte, 8)
	if _, err := f.ReadAt(magic, 0); err != nil || string(magic) != "!<arch>\n" {
		return nil, fmt.Errorf("not an ar archive (a .deb starts with !<arch>)")
	}
	var out []arMember
	off := int64(8)
	for off < size {
		hdr := make([]byte, 60)
		if _, err := f.ReadAt(hdr, off); err != nil {
			return nil, fmt.Errorf("ar header at byte %d: truncated file", off)
		}
		if string(hdr[58:60]) != "`\n" {
			return nil, fmt.Errorf("ar header at byte %d: bad magic", off)
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
		if err != nil || n < 0 || off+60+n > size {
			return nil, fmt.Errorf("ar member at byte %d: bad size %q (file has %d bytes)", off, strings.TrimSpace(string(hdr[48:58])), size)
		}
		out = append(out, arMember{name: strings.TrimRight(strings.TrimSpace(string(hdr[:16])), "/"), offset: off + 60, size: n})
		off += 60 + n + n%2
	}
	return out, nil
}

// decompressed opens a member named *.tar[.gz|.xz|.zst].
func decompressed(name string, r io.Reader) (io.Reader, func(), error) {
	switch {
	case strings.HasSuffix(name, ".tar"):
		return r, func() {}, nil
	case strings.HasSuffix(name, ".gz"):
		g, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return g, func() { g.Close() }, nil
	case strings.HasSuffix(name, ".xz"):
		x, err := xz.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return x, func() {}, nil
	case strings.HasSuffix(name, ".zst"):
		z, err := zstd.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return z, z.Close, nil
	}
	return nil, nil, fmt.Errorf("member %s: unknown compression", name)
}

// debFiles is what dpkg keeps of a package besides its data: the
// control archive's files (control, md5sums, conffiles, maintainer
// scripts, triggers, ...) with their modes.
type debFiles struct {
	files map[string][]byte
	modes map[string]int64
}

// openMember finds the member whose name starts with prefix.
func openMember(path, prefix string) (*os.File, arMember, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, arMember{}, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, arMember{}, err
	}
	ms, err := readAr(f, st.Size())
	if err != nil {
		f.Close()
		return nil, arMember{}, fmt.Errorf("%s: %w", path, err)
	}
	for _, m := range ms {
		if strings.HasPrefix(m.name, prefix) {
			return f, m, nil
		}
	}
	f.Close()
	return nil, arMember{}, fmt.Errorf("%s: no %s member", path, prefix)
}

// readControlFiles reads every regular file of control.tar.*.
func readControlFiles(path string) (*debFiles, error) {
	f, m, err := openMember(path, "control.tar")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, done, err := decompressed(m.name, io.NewSectionReader(f, m.offset, m.size))
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", path, m.name, err)
	}
	defer done()
	out := &debFiles{files: map[string][]byte{}, modes: map[string]int64{}}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, m.name, err)
		}
		name := strings.TrimPrefix(h.Name, "./")
		if h.Typeflag != tar.TypeReg || name == "" || strings.Contains(name, "/") {
			continue
		}
		var b bytes.Buffer
		if _, err := io.CopyN(&b, tr, h.Size); err != nil {
			return nil, fmt.Errorf("%s: %s: %s: %w", path, m.name, name, err)
		}
		out.files[name] = b.Bytes()
		out.modes[name] = h.Mode
	}
}
