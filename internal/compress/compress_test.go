package compress_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/pierrec/lz4/v4"

	"github.com/mkimage/mkimage/internal/bmap/bmaptest"
	"github.com/mkimage/mkimage/internal/compress"
	"github.com/mkimage/mkimage/internal/testenv"
)

func TestCompressFile(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "node.img")
	const size = 16 << 20
	bmaptest.Image(t, src, size, bmaptest.Extents(size))
	want, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		kind compress.Kind
		tool []string // real tool that tests the file, then decompresses to stdout
	}{
		{compress.Zstd, []string{"zstd"}},
		{compress.XZ, []string{"xz"}},
		{compress.Gzip, []string{"gzip"}},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			dst := src + tt.kind.Ext()
			if err := compress.CompressFile(src, dst, tt.kind); err != nil {
				t.Fatal(err)
			}
			if k := compress.KindOf(dst); k != tt.kind {
				t.Errorf("KindOf(%s) = %q", dst, k)
			}
			// Our reader gives the source back.
			f, err := os.Open(dst)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			r, err := compress.NewReader(f, tt.kind)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s: decompressed %d bytes differ from the source", tt.kind, len(got))
			}
			// The real tool accepts it and gives the same bytes.
			testenv.NeedTools(t, tt.tool[0])
			if b, err := exec.Command(tt.tool[0], "-t", dst).CombinedOutput(); err != nil {
				t.Fatalf("%s -t: %v\n%s", tt.tool[0], err, b)
			}
			out, err := exec.Command(tt.tool[0], "-dc", dst).Output()
			if err != nil {
				t.Fatalf("%s -dc: %v", tt.tool[0], err)
			}
			if !bytes.Equal(out, want) {
				t.Errorf("%s -dc gave %d bytes that differ from the source", tt.tool[0], len(out))
			}
		})
	}
}

// TestCompressFileProgress: the watching reader is given the source's
// size and reads all of it, and the output is CompressFile's.
func TestCompressFileProgress(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "node.img")
	for _, size := range []int64{0, 1<<20 + 7} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i * i >> 7)
		}
		if err := os.WriteFile(src, data, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, k := range []compress.Kind{compress.Zstd, compress.XZ} {
			var given, read int64
			err := compress.CompressFileProgress(src, src+k.Ext(), k, func(r io.Reader, size int64) io.Reader {
				given = size
				return readFunc(func(p []byte) (int, error) {
					n, err := r.Read(p)
					read += int64(n)
					return n, err
				})
			})
			if err != nil {
				t.Fatal(err)
			}
			if given != size || read != size {
				t.Errorf("%s, %d bytes: watch given size %d, read %d", k, size, given, read)
			}
			got, err := os.ReadFile(src + k.Ext())
			if err != nil {
				t.Fatal(err)
			}
			if err := compress.CompressFile(src, src+k.Ext(), k); err != nil {
				t.Fatal(err)
			}
			if want, _ := os.ReadFile(src + k.Ext()); !bytes.Equal(got, want) {
				t.Errorf("%s, %d bytes: output differs from CompressFile's", k, size)
			}
		}
	}
}

func TestCompressFileLeavesNothingOnError(t *testing.T) {
	dir := t.TempDir()
	err := compress.CompressFile(filepath.Join(dir, "missing.img"), filepath.Join(dir, "out.zst"), compress.Zstd)
	if err == nil {
		t.Fatal("no error for a missing source")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 0 {
		t.Errorf("left %v behind", ents)
	}
}

func TestParseKind(t *testing.T) {
	for in, want := range map[string]compress.Kind{"": compress.None, "none": compress.None, "zstd": compress.Zstd, "ZST": compress.Zstd, "xz": compress.XZ} {
		if got, err := compress.ParseKind(in); err != nil || got != want {
			t.Errorf("ParseKind(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := compress.ParseKind("gz"); err == nil {
		t.Error("ParseKind(gz) succeeded")
	}
}

// Open tells every format the tool reads by its magic bytes.
func TestOpenSniffs(t *testing.T) {
	data := bytes.Repeat([]byte("mkimage "), 1000)
	var gz, l4 bytes.Buffer
	g := gzip.NewWriter(&gz)
	g.Write(data)
	g.Close()
	lw := lz4.NewWriter(&l4)
	lw.Write(data)
	lw.Close()
	streams := map[compress.Kind][]byte{compress.None: data, compress.Gzip: gz.Bytes(), compress.LZ4: l4.Bytes()}
	for _, k := range []compress.Kind{compress.Zstd, compress.XZ} {
		var b bytes.Buffer
		w, err := compress.NewWriter(&b, k)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
		streams[k] = b.Bytes()
	}
	for k, s := range streams {
		rc, got, err := compress.Open(bytes.NewReader(s))
		if err != nil || got != k {
			t.Errorf("%q: kind %q, %v", k, got, err)
			continue
		}
		out, err := io.ReadAll(rc)
		if err != nil || !bytes.Equal(out, data) {
			t.Errorf("%q: %d bytes back, %v", k, len(out), err)
		}
		if compress.KindOf("x.tar"+k.Ext()) != k {
			t.Errorf("compress.KindOf(x.tar%s) = %q", k.Ext(), compress.KindOf("x.tar"+k.Ext()))
		}
	}
}

// The writers are deterministic: a netboot tree and an image built twice
// from the same inputs hold the same bytes.
func TestBytesDeterministic(t *testing.T) {
	data := make([]byte, 8<<20)
	for i := range data {
		data[i] = byte(i*7 + i/4096) // compressible, not trivially
	}
	for _, k := range []compress.Kind{compress.Gzip, compress.Zstd, compress.XZ} {
		a, err := compress.Bytes(data, k)
		if err != nil {
			t.Fatal(err)
		}
		b, err := compress.Bytes(data, k)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) || len(a) >= len(data) {
			t.Errorf("%s: %d and %d bytes, equal %v", k, len(a), len(b), bytes.Equal(a, b))
		}
		rc, got, err := compress.Open(bytes.NewReader(a))
		if err != nil || got != k {
			t.Fatalf("%s: sniffed %q: %v", k, got, err)
		}
		if out, err := io.ReadAll(rc); err != nil || !bytes.Equal(out, data) {
			t.Errorf("%s: round trip: %d bytes, %v", k, len(out), err)
		}
	}
	if _, err := compress.Bytes(data, compress.LZ4); err == nil {
		t.Error("lz4 has no writer, yet Bytes compressed")
	}
}

type readFunc func([]byte) (int, error)

func (f readFunc) Read(p []byte) (int, error) { return f(p) }
