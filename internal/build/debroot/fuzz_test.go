package debroot

import (
	"bufio"
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/pierrec/lz4/v4"

	"github.com/mkimage/mkimage/internal/testenv"
)

// FuzzIndex reads apt Packages indexes (from the host's mirror, so from
// outside) and resolves a package from what it read.
func FuzzIndex(f *testing.F) {
	f.Add([]byte("Package: a\nVersion: 1:1.0-1\nArchitecture: arm64\nDepends: b (>= 2) | c, d:any\nProvides: v (= 1)\nFilename: pool/a.deb\nSHA256: AB\n\nPackage: b\nVersion: 2\nEssential: yes\nMulti-Arch: foreign\n"))
	// The first stanzas of each real index in the cache (a few: the
	// mutator is slow on big inputs).
	for _, p := range testenv.CacheFiles("apt/lists/*_Packages.lz4") {
		if b, err := stanzas(p, 5); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ix := NewIndex()
		if err := ix.Add("fuzz_Packages", bytes.NewReader(b)); err != nil {
			return
		}
		for _, n := range ix.Names(func(*Pkg) bool { return true }) {
			if p, ok := ix.Get(n); !ok || p.Name != n {
				t.Fatalf("Names lists %q, Get finds %+v", n, p)
			}
			Resolve(ix, "arm64", n)
		}
	})
}

// stanzas returns the first n stanzas of the lz4-compressed index at p.
func stanzas(p string, n int) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out bytes.Buffer
	sc := bufio.NewScanner(lz4.NewReader(f))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() && n > 0 {
		if strings.TrimSpace(sc.Text()) == "" {
			n--
		}
		out.WriteString(sc.Text() + "\n")
	}
	return out.Bytes(), sc.Err()
}

// FuzzCompareVersions: dpkg's order is total, so comparing must be
// antisymmetric and every version equal to itself.
func FuzzCompareVersions(f *testing.F) {
	for _, v := range [][2]string{{"1:1.0-1", "1.0"}, {"1.0~rc1", "1.0"}, {"2.36-9+deb12u4", "2.36-9+deb12u14"}, {"1.0a", "1.0."}} {
		f.Add(v[0], v[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ab, ba := CompareVersions(a, b), CompareVersions(b, a)
		if sign(ab) != -sign(ba) {
			t.Fatalf("compare(%q, %q) = %d but compare(%q, %q) = %d", a, b, ab, b, a, ba)
		}
		if c := CompareVersions(a, a); c != 0 {
			t.Fatalf("compare(%q, itself) = %d", a, c)
		}
	})
}
