package flash

import (
	"bytes"
	"context"
	"encoding/binary"
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

const MiB = 1 << 20

// mbr returns a first sector with the given (start, size) partitions in
// bytes.
func mbr(parts ...[2]int64) []byte {
	b := make([]byte, 512)
	for i, p := range parts {
		e := b[446+16*i:]
		e[4] = 0x83
		binary.LittleEndian.PutUint32(e[8:], uint32(p[0]/512))
		binary.LittleEndian.PutUint32(e[12:], uint32(p[1]/512))
	}
	b[510], b[511] = 0x55, 0xaa
	return b
}

func TestWipeZones(t *testing.T) {
	tests := []struct {
		name string
		mbr  []byte
		dev  int64
		want []bmap.Extent
	}{
		{"no table", make([]byte, 512), 64 * MiB, []bmap.Extent{ext(0, MiB), ext(63*MiB, MiB)}},
		{"no first sector", nil, 64 * MiB, []bmap.Extent{ext(0, MiB), ext(63*MiB, MiB)}},
		{"two partitions", mbr([2]int64{4 * MiB, 8 * MiB}, [2]int64{12 * MiB, 20 * MiB}), 64 * MiB,
			[]bmap.Extent{ext(0, MiB), ext(63*MiB, MiB), ext(4*MiB, MiB), ext(11*MiB, MiB), ext(12*MiB, MiB), ext(31*MiB, MiB)}},
		{"tiny partition", mbr([2]int64{4 * MiB, 4096}), 64 * MiB,
			[]bmap.Extent{ext(0, MiB), ext(63*MiB, MiB), ext(4*MiB, 4096), ext(4*MiB, 4096)}},
		{"partition past device end clipped", mbr([2]int64{60 * MiB, 8 * MiB}), 64 * MiB,
			[]bmap.Extent{ext(0, MiB), ext(63*MiB, MiB), ext(60*MiB, MiB)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := wipeZones(tt.mbr, tt.dev); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("wipeZones = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestUnmapped(t *testing.T) {
	m := &bmap.Map{ImageSize: 64 * MiB, BlockSize: 4096, Ranges: []bmap.Range{{First: 0, Last: 0}, {First: 2, Last: 3}, {First: 256, Last: 511}}}
	got := unmapped([]bmap.Extent{ext(0, MiB), ext(MiB, MiB), ext(63*MiB, MiB)}, m)
	wantAll := []bmap.Extent{ext(4096, 4096), ext(4*4096, MiB-4*4096), ext(63*MiB, MiB)}
	if !reflect.DeepEqual(got, wantAll) {
		t.Errorf("unmapped = %v, want %v", got, wantAll)
	}
	if g := gaps(m); !reflect.DeepEqual(g, []bmap.Extent{ext(4096, 4096), ext(4*4096, MiB-4*4096), ext(2*MiB, 62*MiB)}) {
		t.Errorf("gaps = %v", g)
	}
}

// loop attaches a loop device to a file of size bytes filled with fill.
func loop(t *testing.T, size int64, fill byte) (dev, backing string) {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "losetup")
	backing = filepath.Join(t.TempDir(), "card.raw")
	if err := os.WriteFile(backing, bytes.Repeat([]byte{fill}, int(size)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", backing).CombinedOutput()
	if err != nil {
		testenv.Missing(t, fmt.Sprintf("no loop device: %v %s", err, out))
	}
	dev = strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev, backing
}

// partitionedImage is the test image with a real MBR: FAT-like partition
// at 4 MiB, root from 12 MiB to the end.
func partitionedImage(t *testing.T) (string, *bmap.Map) {
	img := filepath.Join(t.TempDir(), "node.img")
	ext := bmaptest.Image(t, img, imgSize, bmaptest.Extents(imgSize))
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sec := mbr([2]int64{4 * MiB, 8 * MiB}, [2]int64{12 * MiB, imgSize - 12*MiB})
	if _, err := f.WriteAt(sec[446:], 446); err != nil {
		t.Fatal(err)
	}
	m, err := bmap.Create(f, imgSize, ext)
	if err != nil {
		t.Fatal(err)
	}
	return img, m
}

// TestFlashLoopDevice writes to a real block device whose old content is
// all 0xff: mapped blocks get the image, the wipe zones read as zeros
// (the last MiB of the device lies past the image, so only the wipe can
// have zeroed it).
func TestFlashLoopDevice(t *testing.T) {
	const devSize = 96 * MiB
	dev, backing := loop(t, devSize, 0xff)
	img, m := partitionedImage(t)
	tg, err := Sys{Root: "/"}.Inspect(dev, DefaultMaxSize)
	if err != nil {
		t.Fatal(err)
	}
	if !tg.Block || tg.Size != devSize {
		t.Fatalf("Inspect(%s) = %+v, want a %d-byte block device", dev, tg, devSize)
	}
	if !strings.Contains(strings.Join(tg.Problems, "\n"), "not removable") {
		t.Errorf("loop device problems = %q, want not removable", tg.Problems)
	}
	if _, err := Flash(context.Background(), img, m, []Target{tg}, Options{}); err == nil {
		t.Fatal("Flash wrote to a non-removable device without Force")
	}
	res, err := Flash(context.Background(), img, m, []Target{tg}, Options{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if r := res[0]; r.Err != nil || !r.Verified {
		t.Fatalf("%s: err %v, verified %v", dev, r.Err, r.Verified)
	}
	got, err := os.ReadFile(backing)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(img)
	for _, r := range m.Ranges {
		off, end := m.Bytes(r)
		if !bytes.Equal(got[off:end], want[off:end]) {
			t.Errorf("blocks %d-%d differ from the image", r.First, r.Last)
		}
	}
	for _, z := range []bmap.Extent{ext(0, MiB), ext(4*MiB, MiB), ext(11*MiB, MiB), ext(12*MiB, MiB), ext(63*MiB, MiB)} {
		if i := firstDiff(got[z.Off:z.Off+z.Len], want[z.Off:z.Off+z.Len]); i >= 0 {
			t.Errorf("wipe zone at %d MiB: byte %d is %#x, image has %#x", z.Off/MiB, z.Off+int64(i), got[z.Off+int64(i)], want[z.Off+int64(i)])
		}
	}
	if tail := got[devSize-MiB:]; !bytes.Equal(tail, make([]byte, MiB)) {
		t.Errorf("the device's last MiB was not zeroed")
	}
}

// TestLoopDeviceTooSmall: a card smaller than the image is refused before
// anything is written, even with Force.
func TestLoopDeviceTooSmall(t *testing.T) {
	dev, backing := loop(t, 8*MiB, 0xab)
	img, m := testImage(t)
	tg, err := Sys{Root: "/"}.Inspect(dev, DefaultMaxSize)
	if err != nil {
		t.Fatal(err)
	}
	ok := fileTargets(t, t.TempDir(), 1)[0]
	_, err = Flash(context.Background(), img, m, []Target{ok, tg}, Options{Force: true})
	if err == nil || !strings.Contains(err.Error(), dev+" is 8.4 MB (8.0 MiB), smaller than the image") {
		t.Fatalf("Flash = %v, want the size refusal naming %s", err, dev)
	}
	if _, err := os.Stat(ok.Path); err == nil {
		t.Errorf("%s was created although the run was refused", ok.Path)
	}
	got, _ := os.ReadFile(backing)
	if !bytes.Equal(got, bytes.Repeat([]byte{0xab}, 8*MiB)) {
		t.Error("the small device was written to")
	}
}
