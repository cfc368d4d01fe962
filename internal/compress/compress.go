// Package compress is the project's one place for compression: it writes
// compressed disk images (zstd from klauspost/compress; xz from
// ulikunitz/xz with a CRC64 check, which xz(1), Etcher and bmaptool read)
// and the gzip'd kernel a netboot tree serves (U-Boot's booti unpacks
// gzip), and reads every compressed input the tool takes (images, .deb members,
// tarballs, kernel modules, apt indexes, kernel configs): gzip, xz, zstd
// and lz4, chosen by file name or by magic bytes.
package compress

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/pierrec/lz4/v4"

	"github.com/mkimage/mkimage/internal/atomicfile"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Kind names a compression format.
type Kind string

const (
	None Kind = ""
	Zstd Kind = "zst"
	XZ   Kind = "xz"
	Gzip Kind = "gz"
	LZ4  Kind = "lz4"
)

// ParseKind accepts the --compress values: "", "none", "zst", "zstd", "xz".
func ParseKind(s string) (Kind, error) {
	switch strings.ToLower(s) {
	case "", "none":
		return None, nil
	case "zst", "zstd":
		return Zstd, nil
	case "xz":
		return XZ, nil
	}
	return None, fmt.Errorf("unknown compression %q (want zst or xz)", s)
}

// KindOf tells the format from a file name's extension (None for any
// other extension).
func KindOf(path string) Kind {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".zst":
		return Zstd
	case ".xz":
		return XZ
	case ".gz":
		return Gzip
	case ".lz4":
		return LZ4
	}
	return None
}

// Sniff tells the format from a file's first bytes (six are enough).
func Sniff(head []byte) Kind {
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return Gzip
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return XZ
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return Zstd
	case bytes.HasPrefix(head, []byte{0x04, 0x22, 0x4d, 0x18}):
		return LZ4
	}
	return None
}

// Open reads r decompressed, the format told by its magic bytes (anything
// else is read as it is).
func Open(r io.Reader) (io.ReadCloser, Kind, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	head, err := br.Peek(6)
	if err != nil && err != io.EOF {
		return nil, None, err
	}
	k := Sniff(head)
	rc, err := NewReader(br, k)
	return rc, k, err
}

// Ext is the file name extension for k, with its dot ("" for None).
func (k Kind) Ext() string {
	if k == None {
		return ""
	}
	return "." + string(k)
}

// NewWriter returns a compressing writer; Close flushes it but does not
// close w. The same input gives the same bytes: gzip's header carries no
// time or name.
func NewWriter(w io.Writer, k Kind) (io.WriteCloser, error) {
	switch k {
	case Gzip:
		return gzip.NewWriterLevel(w, gzip.BestCompression)
	case Zstd:
		return zstd.NewWriter(w, zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)))
	case XZ:
		return xz.WriterConfig{CheckSum: xz.CRC64}.NewWriter(w)
	}
	return nil, fmt.Errorf("no compressor for %q", k)
}

// NewReader returns a decompressing reader for r (r itself for None).
func NewReader(r io.Reader, k Kind) (io.ReadCloser, error) {
	switch k {
	case None:
		return io.NopCloser(r), nil
	case Zstd:
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<30))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case XZ:
		x, err := xz.NewReader(bufio.NewReaderSize(r, 1<<20))
		if err != nil {
			return nil, err
		}
		return io.NopCloser(x), nil
	case Gzip:
		return gzip.NewReader(r)
	case LZ4:
		return io.NopCloser(lz4.NewReader(r)), nil
	}
	return nil, fmt.Errorf("no decompressor for %q", k)
}

// Bytes returns b compressed as k.
func Bytes(b []byte, k Kind) ([]byte, error) {
	var out bytes.Buffer
	w, err := NewWriter(&out, k)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(b); err != nil {
		return nil, fmt.Errorf("compressing as %s: %w", k, err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("compressing as %s: %w", k, err)
	}
	return out.Bytes(), nil
}

// CompressFile writes src compressed as k to dst. dst appears only
// complete: it is written to a temporary file beside it and renamed.
func CompressFile(src, dst string, k Kind) error {
	return CompressFileProgress(src, dst, k, nil)
}

// CompressFileProgress is CompressFile that reads src, when watch is not
// nil, through watch(src's reader, src's size): a progress meter's reader
// (progress.Reading) sees how far it is.
func CompressFileProgress(src, dst string, k Kind, watch func(r io.Reader, size int64) io.Reader) (err error) {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	var in io.Reader = f
	if watch != nil {
		st, err := f.Stat()
		if err != nil {
			return err
		}
		in = watch(f, st.Size())
	}
	tmp, err := atomicfile.Create(dst, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Abort()
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	cw, err := NewWriter(bw, k)
	if err != nil {
		return err
	}
	if _, err := io.CopyBuffer(cw, in, make([]byte, 1<<20)); err != nil {
		return fmt.Errorf("compressing %s: %w", src, err)
	}
	if err := cw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return tmp.Commit()
}
