// Package compress writes and reads compressed disk images: zstd
// (klauspost/compress) and xz (ulikunitz/xz, CRC64 check, which xz(1),
// Etcher and bmaptool read).
package compress

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

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

// KindOf tells the format from a file name's extension.
func KindOf(path string) Kind {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".zst":
		return Zstd
	case ".xz":
		return XZ
	}
	return None
}

// Ext is the file name extension for k, with its dot ("" for None).
func (k Kind) Ext() string {
	if k == None {
		return ""
	}
	return "." + string(k)
}

// NewWriter returns a compressing writer; Close flushes it but does not
// close w.
func NewWriter(w io.Writer, k Kind) (io.WriteCloser, error) {
	switch k {
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
	}
	return nil, fmt.Errorf("no decompressor for %q", k)
}

// CompressFile writes src compressed as k to dst. dst appears only
// complete: it is written to a temporary file beside it and renamed.
func CompressFile(src, dst string, k Kind) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
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
