package bmap_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/bmap"
	"github.com/mkimage/mkimage/internal/bmap/bmaptest"
	"github.com/mkimage/mkimage/internal/testenv"
)

const imgSize = 64 << 20

func TestBlocks(t *testing.T) {
	const K = bmap.BlockSize
	tests := []struct {
		name string
		in   []bmap.Extent
		size int64
		want []bmap.Range
	}{
		{"empty", nil, 10 * K, nil},
		{"one byte", []bmap.Extent{{5, 1}}, 10 * K, []bmap.Range{{0, 0, ""}}},
		{"rounds out", []bmap.Extent{{K - 1, 2}}, 10 * K, []bmap.Range{{0, 1, ""}}},
		{"exact block", []bmap.Extent{{K, K}}, 10 * K, []bmap.Range{{1, 1, ""}}},
		{"adjacent merge", []bmap.Extent{{0, K}, {K, K}}, 10 * K, []bmap.Range{{0, 1, ""}}},
		{"gap kept", []bmap.Extent{{0, K}, {2 * K, K}}, 10 * K, []bmap.Range{{0, 0, ""}, {2, 2, ""}}},
		{"unsorted overlap", []bmap.Extent{{5 * K, 3 * K}, {0, 1}, {6 * K, K}}, 10 * K, []bmap.Range{{0, 0, ""}, {5, 7, ""}}},
		{"contained", []bmap.Extent{{0, 8 * K}, {2 * K, K}}, 10 * K, []bmap.Range{{0, 7, ""}}},
		{"clipped at end", []bmap.Extent{{9 * K, 5 * K}}, 10 * K, []bmap.Range{{9, 9, ""}}},
		{"partial last block", []bmap.Extent{{2 * K, 100}}, 2*K + 100, []bmap.Range{{2, 2, ""}}},
		{"past end dropped", []bmap.Extent{{20 * K, K}, {0, 0}}, 10 * K, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := bmap.Blocks(tt.in, tt.size); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Blocks = %v, want %v", got, tt.want)
			}
		})
	}
}

func makeImage(t *testing.T) (string, []bmap.Extent) {
	img := filepath.Join(t.TempDir(), "node.img")
	return img, bmaptest.Image(t, img, imgSize, bmaptest.Extents(imgSize))
}

func create(t *testing.T, img string, ext []bmap.Extent) *bmap.Map {
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := bmap.Create(f, imgSize, ext)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRoundTrip(t *testing.T) {
	img, ext := makeImage(t)
	m := create(t, img, ext)
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := bmap.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("Parse(Marshal(m)) = %+v, want %+v", got, m)
	}
	if m.MappedBlocks() == 0 || m.MappedBlocks() >= m.BlocksCount() {
		t.Errorf("mapped %d of %d blocks: test image not sparse", m.MappedBlocks(), m.BlocksCount())
	}
}

func TestParseRejects(t *testing.T) {
	img, ext := makeImage(t)
	good, err := create(t, img, ext).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sum := regexpSum(t, good)
	tests := []struct {
		name, old, new, want string
	}{
		{"edited range", "> 0-", "> 1-", "BmapFileChecksum mismatch"},
		{"version 3", `version="2.0"`, `version="3.0"`, "not supported"},
		{"md5", "<ChecksumType> sha256", "<ChecksumType> md5", "md5"},
		{"not xml", "<bmap", "<<bmap", "not a bmap file"},
		{"short file checksum", sum, sum[:10], "bad BmapFileChecksum"},
		// Found writing FuzzParse: the sum is located in the raw bytes, which
		// panicked when it was spelled with a character reference.
		{"checksum as character reference", sum, fmt.Sprintf("&#%d;%s", sum[0], sum[1:]), "is not written out as plain text"},
		{"exabyte image", "<ImageSize> 67108864 ", "<ImageSize> 9223372036854775807 ", "bad ImageSize 9223372036854775807"},
		{"huge blocks", "<BlockSize> 4096 ", "<BlockSize> 4611686018427387904 ", "bad BlockSize"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := bytes.Replace(good, []byte(tt.old), []byte(tt.new), 1)
			if bytes.Equal(bad, good) {
				t.Fatalf("replacement %q did not apply", tt.old)
			}
			_, err := bmap.Parse(bad)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func regexpSum(t *testing.T, data []byte) string {
	s := string(data)
	i := strings.Index(s, "<BmapFileChecksum> ")
	if i < 0 {
		t.Fatal("no BmapFileChecksum")
	}
	return s[i+len("<BmapFileChecksum> ") : i+len("<BmapFileChecksum> ")+64]
}

// TestBmaptoolCopy lets the real bmaptool judge our map: it checks the
// file checksum and every range's checksum while copying.
func TestBmaptoolCopy(t *testing.T) {
	testenv.NeedTools(t, "bmaptool")
	img, ext := makeImage(t)
	dir := t.TempDir()
	bm := filepath.Join(dir, "node.bmap")
	m := create(t, img, ext)
	if err := m.WriteFile(bm); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.img")
	if b, err := exec.Command("bmaptool", "copy", "--bmap", bm, img, out).CombinedOutput(); err != nil {
		t.Fatalf("bmaptool copy: %v\n%s", err, b)
	}
	// The extents hold all the image's data, so a fresh copy (zeros where
	// unmapped) must equal the image.
	sameFiles(t, img, out)

	// The same run must fail when a range checksum is wrong: proof that
	// bmaptool checked ours.
	m.Ranges[1].Sum = strings.Repeat("ab", 32)
	if err := m.WriteFile(bm); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("bmaptool", "copy", "--bmap", bm, img, out).CombinedOutput(); err == nil {
		t.Fatalf("bmaptool copy accepted a wrong range checksum:\n%s", b)
	}
}

// TestAgainstBmaptoolCreate: for an image whose data extents hold no zero
// blocks, FromFile must find exactly what bmaptool create finds.
func TestAgainstBmaptoolCreate(t *testing.T) {
	testenv.NeedTools(t, "bmaptool")
	img, _ := makeImage(t)
	theirs := filepath.Join(t.TempDir(), "theirs.bmap")
	if b, err := exec.Command("bmaptool", "create", "-o", theirs, img).CombinedOutput(); err != nil {
		t.Fatalf("bmaptool create: %v\n%s", err, b)
	}
	want, err := bmap.ReadFile(theirs)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := bmap.FromFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("FromFile:\n%+v\nbmaptool create:\n%+v", got, want)
	}
}

func TestFromFileSkipsZeroBlocks(t *testing.T) {
	img, _ := makeImage(t)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	before, err := bmap.FromFile(f)
	if err != nil {
		t.Fatal(err)
	}
	// Write explicit zeros (allocated, not a hole) into blocks 30..31 MiB
	// and non-zero bytes into block 40 MiB.
	if _, err := f.WriteAt(make([]byte, 1<<20), 30<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{1}, 40<<20+7); err != nil {
		t.Fatal(err)
	}
	after, err := bmap.FromFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if n := after.MappedBlocks() - before.MappedBlocks(); n != 1 {
		t.Errorf("mapped blocks grew by %d, want 1 (zeros stay unmapped, the 1-byte write maps one block)", n)
	}
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	streamed, err := bmap.ScanAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(streamed, after) {
		t.Errorf("ScanAll = %+v, FromFile = %+v", streamed, after)
	}
}

func sameFiles(t *testing.T, a, b string) {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(x) != len(y) {
		t.Fatalf("%s has %d bytes, %s has %d", a, len(x), b, len(y))
	}
	for i := range x {
		if x[i] != y[i] {
			t.Fatalf("%s and %s differ first at byte %d", a, b, i)
		}
	}
}

// TestSplit: long ranges are cut at the limit and each part hashed; a
// short one keeps its sum.
func TestSplit(t *testing.T) {
	const bs = bmap.BlockSize
	img := make([]byte, 40*bs)
	for i := range img {
		img[i] = byte(i * 7)
	}
	m, err := bmap.Create(bytes.NewReader(img), int64(len(img)), []bmap.Extent{{Off: 0, Len: 2 * bs}, {Off: 10 * bs, Len: 25 * bs}})
	if err != nil {
		t.Fatal(err)
	}
	short := m.Ranges[0]
	if err := m.Split(bytes.NewReader(img), 3*bs+1); err == nil {
		t.Error("a limit that is no multiple of the block size was taken")
	}
	if err := m.Split(bytes.NewReader(img), 10*bs); err != nil {
		t.Fatal(err)
	}
	want := []bmap.Range{short}
	for _, r := range [][2]int64{{10, 19}, {20, 29}, {30, 34}} {
		s := sha256.Sum256(img[r[0]*bs : (r[1]+1)*bs])
		want = append(want, bmap.Range{First: r[0], Last: r[1], Sum: hex.EncodeToString(s[:])})
	}
	if !reflect.DeepEqual(m.Ranges, want) {
		t.Errorf("ranges\n%+v\nwant\n%+v", m.Ranges, want)
	}
}
