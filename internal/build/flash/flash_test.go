package flash

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/mkimage/mkimage/internal/bmap"
	"github.com/mkimage/mkimage/internal/bmap/bmaptest"
	"github.com/mkimage/mkimage/internal/compress"
	"github.com/mkimage/mkimage/internal/testenv"
)

const imgSize = 64 << 20

// testImage writes a sparse 64 MiB image and its .bmap beside it.
func testImage(t *testing.T) (string, *bmap.Map) {
	t.Helper()
	dir := t.TempDir()
	img := filepath.Join(dir, "node.img")
	ext := bmaptest.Image(t, img, imgSize, bmaptest.Extents(imgSize))
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := bmap.Create(f, imgSize, ext)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.WriteFile(filepath.Join(dir, "node.bmap")); err != nil {
		t.Fatal(err)
	}
	return img, m
}

// fileTargets returns n target paths; odd ones already exist, larger than
// the image and full of 0xff, so stale content must be gone afterwards.
func fileTargets(t *testing.T, dir string, n int) []Target {
	t.Helper()
	var ts []Target
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("card%d.img", i))
		if i%2 == 1 {
			if err := os.WriteFile(p, bytes.Repeat([]byte{0xff}, imgSize+12345), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		tg, err := Sys{Root: "/"}.Inspect(p, DefaultMaxSize)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, tg)
	}
	return ts
}

func flashFiles(t *testing.T, img string, m *bmap.Map, ts []Target) []Result {
	t.Helper()
	var log bytes.Buffer
	res, err := Flash(context.Background(), img, m, ts, Options{Progress: &log})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(ts) {
		t.Fatalf("%d results for %d targets", len(res), len(ts))
	}
	return res
}

func sameFile(t *testing.T, want []byte, path string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%s has %d bytes, want %d", path, len(got), len(want))
	}
	if i := firstDiff(got, want); i >= 0 {
		t.Fatalf("%s differs from the image first at byte %d", path, i)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

func TestFlashEightFiles(t *testing.T) {
	img, _ := testImage(t)
	m, from, err := LoadMap(img, "")
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(from) != "node.bmap" {
		t.Errorf("LoadMap used %s, want node.bmap beside the image", from)
	}
	ts := fileTargets(t, t.TempDir(), 8)
	res := flashFiles(t, img, m, ts)
	want, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Err != nil || !r.Verified {
			t.Errorf("%s: err %v, verified %v", r.Target, r.Err, r.Verified)
		}
		if r.Written != m.MappedBytes() {
			t.Errorf("%s: wrote %d bytes, want the %d mapped", r.Target, r.Written, m.MappedBytes())
		}
		sameFile(t, want, ts[i].Path)
	}
	var tab bytes.Buffer
	WriteTable(&tab, res)
	if strings.Count(tab.String(), "verified") != 8 {
		t.Errorf("table does not show 8 verified targets:\n%s", tab.String())
	}

	// bmaptool, given our .bmap, writes the same bytes as we did.
	testenv.NeedTools(t, "bmaptool")
	out := filepath.Join(t.TempDir(), "bmaptool.img")
	if b, err := exec.Command("bmaptool", "copy", "--bmap", from, img, out).CombinedOutput(); err != nil {
		t.Fatalf("bmaptool copy: %v\n%s", err, b)
	}
	sameFile(t, want, out)
}

func TestFlashCompressed(t *testing.T) {
	img, m := testImage(t)
	want, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []compress.Kind{compress.Zstd, compress.XZ} {
		t.Run(string(k), func(t *testing.T) {
			src := img + k.Ext()
			if err := compress.CompressFile(img, src, k); err != nil {
				t.Fatal(err)
			}
			// node.img.zst finds node.bmap too.
			got, from, err := LoadMap(src, "")
			if err != nil || filepath.Base(from) != "node.bmap" {
				t.Fatalf("LoadMap(%s) = %s, %v", src, from, err)
			}
			ts := fileTargets(t, t.TempDir(), 3)
			for _, r := range flashFiles(t, src, got, ts) {
				if r.Err != nil || !r.Verified {
					t.Errorf("%s: err %v, verified %v", r.Target, r.Err, r.Verified)
				}
			}
			for _, tg := range ts {
				sameFile(t, want, tg.Path)
			}
		})
	}
	_ = m
}

// TestFlashWithoutBmap maps the image itself: the raw image by its data
// extents, the compressed one by its non-zero blocks.
func TestFlashWithoutBmap(t *testing.T) {
	img, m := testImage(t)
	os.Remove(filepath.Join(filepath.Dir(img), "node.bmap"))
	if err := compress.CompressFile(img, img+".zst", compress.Zstd); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(img)
	for _, src := range []string{img, img + ".zst"} {
		got, from, err := LoadMap(src, "")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(from, "no .bmap found") {
			t.Errorf("LoadMap(%s) used %q", src, from)
		}
		// The test image has no zero blocks in its data, so the derived
		// map holds the same blocks as the builder's extents.
		if got.MappedBlocks() != m.MappedBlocks() {
			t.Errorf("%s: derived map has %d blocks, want %d", src, got.MappedBlocks(), m.MappedBlocks())
		}
		ts := fileTargets(t, t.TempDir(), 2)
		for _, r := range flashFiles(t, src, got, ts) {
			if r.Err != nil || !r.Verified {
				t.Errorf("%s: err %v", r.Target, r.Err)
			}
		}
		sameFile(t, want, ts[1].Path)
	}
}

// TestFlashOneFails: an injected write error on one target leaves the
// others written and verified.
func TestFlashOneFails(t *testing.T) {
	img, m := testImage(t)
	ts := fileTargets(t, t.TempDir(), 4)
	bad := ts[2].Path
	var once sync.Once
	writeHook = func(path string, off int64) error {
		if path == bad && off >= 20<<20 {
			var err error
			once.Do(func() { err = syscall.EIO })
			return err
		}
		return nil
	}
	defer func() { writeHook = nil }()
	res := flashFiles(t, img, m, ts)
	want, _ := os.ReadFile(img)
	for i, r := range res {
		if r.Target == bad {
			if r.Err == nil || !strings.Contains(r.Err.Error(), "writing at byte 20971520") || !errors.Is(r.Err, syscall.EIO) {
				t.Errorf("%s: err %v, want the injected EIO at byte 20971520", bad, r.Err)
			}
			if r.Verified {
				t.Errorf("%s: failed target reported verified", bad)
			}
			continue
		}
		if r.Err != nil || !r.Verified {
			t.Errorf("%s: err %v, verified %v", r.Target, r.Err, r.Verified)
		}
		sameFile(t, want, ts[i].Path)
	}
	if Failed(res) != 1 {
		t.Errorf("Failed = %d, want 1", Failed(res))
	}
}

// TestFlashFullFilesystem: a target on a 2 MiB tmpfs (the image maps 3.5 MB) runs out of space
// part way; the others are written and verified.
func TestFlashFullFilesystem(t *testing.T) {
	testenv.NeedRoot(t)
	img, m := testImage(t)
	small := t.TempDir()
	if b, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", small).CombinedOutput(); err != nil {
		testenv.Missing(t, fmt.Sprintf("cannot mount tmpfs: %v %s", err, b))
	}
	t.Cleanup(func() { exec.Command("umount", small).Run() })
	ts := fileTargets(t, t.TempDir(), 3)
	full, err := Sys{Root: "/"}.Inspect(filepath.Join(small, "card.img"), DefaultMaxSize)
	if err != nil {
		t.Fatal(err)
	}
	ts = append(ts, full)
	res := flashFiles(t, img, m, ts)
	for _, r := range res[:3] {
		if r.Err != nil || !r.Verified {
			t.Errorf("%s: err %v, verified %v", r.Target, r.Err, r.Verified)
		}
	}
	if r := res[3]; !errors.Is(r.Err, syscall.ENOSPC) {
		t.Errorf("%s: err %v, want no space left on device", r.Target, r.Err)
	}
}

// TestVerifyCatchesCorruption: a byte changed on the target after writing
// is reported, so a pass means the bytes were checked.
func TestVerifyCatchesCorruption(t *testing.T) {
	img, m := testImage(t)
	ts := fileTargets(t, t.TempDir(), 1)
	if r := flashFiles(t, img, m, ts)[0]; r.Err != nil {
		t.Fatal(r.Err)
	}
	f, err := os.OpenFile(ts[0].Path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	off, _ := m.Bytes(m.Ranges[3])
	f.WriteAt([]byte{0}, off+5)
	f.Close()
	w := &writer{t: ts[0], m: m}
	if err := w.verify(); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("blocks %d-%d", m.Ranges[3].First, m.Ranges[3].Last)) {
		t.Errorf("verify = %v, want a mismatch in range 3", err)
	}
}

// TestFlashDamagedImage: an image that no longer matches its bmap fails
// every target instead of writing wrong data silently.
func TestFlashDamagedImage(t *testing.T) {
	img, m := testImage(t)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	off, _ := m.Bytes(m.Ranges[1])
	b := make([]byte, 1)
	f.ReadAt(b, off)
	f.WriteAt([]byte{^b[0]}, off)
	f.Close()
	for _, r := range flashFiles(t, img, m, fileTargets(t, t.TempDir(), 2)) {
		if r.Err == nil || !strings.Contains(r.Err.Error(), "do not match the bmap") {
			t.Errorf("%s: err %v, want a bmap checksum mismatch", r.Target, r.Err)
		}
	}
}

func TestFlashRefusesTheImageItself(t *testing.T) {
	img, m := testImage(t)
	before, _ := os.ReadFile(img)
	tg, err := Sys{Root: "/"}.Inspect(img, DefaultMaxSize)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Flash(context.Background(), img, m, []Target{tg}, Options{}); err == nil || !strings.Contains(err.Error(), "is the image itself") {
		t.Fatalf("Flash = %v, want a refusal", err)
	}
	after, _ := os.ReadFile(img)
	if !bytes.Equal(before, after) {
		t.Error("the image changed")
	}
}
