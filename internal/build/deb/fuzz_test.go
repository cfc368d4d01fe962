package deb

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/testenv"
)

// arFile returns an ar archive of the members, as dpkg-deb writes it.
func arFile(members ...arMember) []byte {
	var b bytes.Buffer
	b.WriteString(arMagic)
	for _, m := range members {
		fmt.Fprintf(&b, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", m.name, 0, 0, 0, "100644", len(m.data))
		b.Write(m.data)
		if len(m.data)%2 == 1 {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

type arMember struct {
	name string
	data []byte
}

// tarOf returns an uncompressed tar of regular files, name then content.
func tarOf(t testing.TB, files ...string) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for i := 0; i+1 < len(files); i += 2 {
		must(t, tw.WriteHeader(&tar.Header{Name: files[i], Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(files[i+1]))}))
		_, err := tw.Write([]byte(files[i+1]))
		must(t, err)
	}
	must(t, tw.Close())
	return b.Bytes()
}

// zstdBomb returns a zstd frame of head followed by n zero bytes, built
// by hand from RLE blocks (4 bytes per 128 KiB) so a test can hold a
// gigabyte of zeros in 32 KiB without compressing it first.
func zstdBomb(head []byte, n int64) []byte {
	const maxBlock = 128 << 10
	b := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38} // magic; no content size; 128 KiB window
	block := func(typ byte, size int, last bool, content []byte) {
		h := uint32(size)<<3 | uint32(typ)<<1
		if last {
			h |= 1
		}
		b = binary.LittleEndian.AppendUint32(b, h)[:len(b)+3]
		b = append(b, content...)
	}
	for len(head) > 0 {
		k := min(len(head), maxBlock)
		block(0, k, n == 0 && k == len(head), head[:k])
		head = head[k:]
	}
	for n > 0 {
		k := min(n, maxBlock)
		n -= k
		block(1, int(k), n == 0, []byte{0})
	}
	return b
}

// bigEntry returns a tar header (no data) for a regular file of size bytes.
func bigEntry(t testing.TB, name string, size int64) []byte {
	var b bytes.Buffer
	must(t, tar.NewWriter(&b).WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size}))
	return b.Bytes()
}

func control(installedSize string) string {
	c := "Package: bomb\nVersion: 1\nArchitecture: arm64\n"
	if installedSize != "" {
		c += "Installed-Size: " + installedSize + "\n"
	}
	return c
}

// FuzzRead opens packages from bytes (the ar index, debian-binary, the
// control member and file) and walks both tar members to the end.
func FuzzRead(f *testing.F) {
	f.Add(arFile(arMember{"debian-binary", []byte("2.0\n")},
		arMember{"control.tar", tarOf(f, "./control", control("4"), "./md5sums", "")},
		arMember{"data.tar", tarOf(f, "./usr/bin/x", "elf")}))
	f.Add(arFile(arMember{"debian-binary", []byte("2.0\n")},
		arMember{"control.tar.zst", zstdBomb(tarOf(f, "./control", control("")), 0)},
		arMember{"data.tar.zst", zstdBomb(bigEntry(f, "./big", 1000), 1024)}))
	// dpkg-deb's own output, every compression it writes, when installed.
	if _, err := os.Stat("/usr/bin/dpkg-deb"); err == nil {
		for _, z := range []string{"gzip", "xz", "zstd", "none"} {
			if b, err := os.ReadFile(buildDeb(f, z)); err == nil {
				f.Add(b)
			}
		}
	}
	// Debian's packages from the cache: the small ones whole, the kernel's
	// ar members and control.tar.xz with its data member cut to 16 KiB.
	for _, p := range testenv.CacheFiles("apt/debs/*.deb") {
		st, err := os.Stat(p)
		if err != nil {
			continue
		}
		if st.Size() <= 1<<20 {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
			continue
		}
		if b, err := cutDeb(p, 16<<10); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Read(bytes.NewReader(b), int64(len(b)), "fuzz.deb")
		if err != nil {
			return
		}
		ParseDepends(p.Control().Depends)
		drain := func(_ *tar.Header, r io.Reader) error { _, err := io.Copy(io.Discard, r); return err }
		p.ControlFiles(drain)
		p.Data(drain)
		if r, err := p.OpenData(); err == nil {
			io.Copy(io.Discard, r)
			r.Close()
		}
	})
}

// cutDeb returns the package at path with every member cut to max bytes
// (the ar sizes rewritten to match).
func cutDeb(path string, max int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	ms, err := readAr(f, st.Size())
	if err != nil {
		return nil, err
	}
	var out []arMember
	for _, m := range ms {
		b := make([]byte, min(m.size, int64(max)))
		if _, err := f.ReadAt(b, m.offset); err != nil {
			return nil, err
		}
		out = append(out, arMember{m.name, b})
	}
	return arFile(out...), nil
}

func FuzzParseControl(f *testing.F) {
	f.Add([]byte("Package: hello\nVersion: 1:1.0-1\nDepends: libc6 (>= 2.36), foo | bar:any [amd64] <!nocheck>\nDescription: x\n more\n"))
	f.Add([]byte("Package: a\nPre-Depends: b (<< 2)\nProvides: c (= 1), d\n\nPackage: second\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseControl(b)
		if err != nil {
			return
		}
		for _, field := range []string{"Depends", "Pre-Depends", "Provides", "Recommends"} {
			deps, err := ParseDepends(c.Get(field))
			if err != nil {
				continue
			}
			for _, alts := range deps {
				for _, d := range alts {
					if d.Name == "" || (d.Op == "") != (d.Version == "") {
						t.Fatalf("%s: parsed %+v from %q", field, d, c.Get(field))
					}
				}
			}
		}
	})
}

// TestBombs: members that decompress to far more than the package could
// hold are refused, naming the member and the limit, in bounded memory
// and time: the reader stops at the limit however much more follows.
func TestBombs(t *testing.T) {
	const gib = 1 << 30
	bombDeb := func(installedSize string, ctrl []byte) []byte {
		if ctrl == nil {
			ctrl = zstdBomb(tarOf(t, "./control", control(installedSize)), 0)
		}
		return arFile(arMember{"debian-binary", []byte("2.0\n")},
			arMember{"control.tar.zst", ctrl},
			arMember{"data.tar.zst", zstdBomb(bigEntry(t, "./big", gib), gib)})
	}
	// keep reads an entry into memory as rootfs does; discard streams it.
	keep := func(_ *tar.Header, r io.Reader) error {
		_, err := fstree.ReadBytes(r, gib)
		return err
	}
	discard := func(_ *tar.Header, r io.Reader) error { _, err := io.Copy(io.Discard, r); return err }
	for _, tt := range []struct {
		name     string
		deb      []byte
		consume  func(*tar.Header, io.Reader) error
		maxAlloc uint64
		err      string
	}{
		{"data held to Installed-Size", bombDeb("4", nil), keep, 24 << 20,
			`bomb.deb: data.tar.zst: entry "./big": decompresses to more than 4202496 bytes (twice the package's Installed-Size of 4 KiB, plus 4 MiB): refused as a decompression bomb`},
		{"a lying Installed-Size", bombDeb("999999999", nil), discard, 8 << 20,
			`bomb.deb: data.tar.zst: entry "./big": decompresses to more than 67108864 bytes (1000 times its 33289 bytes): refused as a decompression bomb`},
		{"no Installed-Size", bombDeb("", nil), discard, 8 << 20,
			`decompresses to more than 67108864 bytes (1000 times its 33289 bytes)`},
		{"control member", bombDeb("", zstdBomb(bigEntry(t, "./control", gib), gib)), discard, 8 << 20,
			`bomb.deb: control.tar.zst: control file is larger than 1048576 bytes`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			testenv.Bounded(t, tt.maxAlloc, time.Second, func() {
				var p *Package
				if p, err = Read(bytes.NewReader(tt.deb), int64(len(tt.deb)), "bomb.deb"); err == nil {
					err = p.Data(tt.consume)
				}
			})
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("error %v, want %q", err, tt.err)
			}
		})
	}
}

// TestRealLimits: Debian's own packages stay inside the bomb limits.
func TestRealLimits(t *testing.T) {
	testenv.Short(t) // decompresses the 360 MB kernel package
	debs := testenv.CacheFiles("apt/debs/*.deb")
	if len(debs) == 0 {
		t.Skip("no .deb in the cache (a build fetches them)")
	}
	for _, path := range debs {
		p, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Data(func(_ *tar.Header, r io.Reader) error { _, err := io.Copy(io.Discard, r); return err }); err != nil {
			t.Error(err)
		}
	}
}
