package bootblob

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/build/amlimage"
	"github.com/mkimage/mkimage/internal/build/bootblob/bootblobtest"
	"github.com/mkimage/mkimage/internal/build/fip"
)

// plainFIP is an unsigned FIP of two entries.
func plainFIP(t *testing.T) []byte {
	toc := &fip.TOC{Entries: []fip.Entry{{UUID: fip.BL31, Offset: 0x4000, Size: 0x100}, {UUID: fip.BL33, Offset: 0x8000, Size: 0x100}}, End: 0xC000}
	b, err := toc.Marshal(0x4000)
	if err != nil {
		t.Fatal(err)
	}
	return append(b, bootblobtest.Random(9, 0x8000)...)
}

func flip(b []byte, at int) []byte {
	c := append([]byte(nil), b...)
	c[at] ^= 0x80
	return c
}

// noBL33 is a signed SD image whose FIP lacks BL33.
func noBL33(t *testing.T) []byte {
	p := bootblobtest.Parts(6)
	img, err := amlimage.Build(p.BL2, amlimage.GXBBImages(p.BL30, p.BL301, p.BL31, p.BL33)[:3])
	if err != nil {
		t.Fatal(err)
	}
	return amlimage.SDImage(img)
}

func TestIdentify(t *testing.T) {
	sd := bootblobtest.SDImage(t, 1)
	img := sd[amlimage.SDPrefix:]
	bl1, hk := bootblobtest.HardkernelPair(t, 1)
	a8k := bootblobtest.Armada8K(bootblobtest.Random(3, 1000))
	for _, tc := range []struct {
		name    string
		data    []byte
		kind    Kind
		what    string
		problem string
	}{
		{"sd image", sd, AmlogicSD, "a signed Amlogic SD image (FIP with BL2, BL30, BL301, BL31, BL33)", ""},
		{"boot image", img, AmlogicImage, "without the SD card's first sector", ""},
		{"hardkernel u-boot.bin", hk, HardkernelFIP, "Hardkernel's u-boot.bin (FIP without BL1): pass bl1.bin.hardkernel too", ""},
		{"bl1.bin.hardkernel", bl1, HardkernelBL1, "pass Hardkernel's u-boot.bin too", ""},
		{"signed BL2 alone", img[:amlimage.FIPAt], AmlogicBL2, "a signed Amlogic BL2 without a FIP", ""},
		{"plain fip", plainFIP(t), FIP, "a plain ARM Trusted Firmware FIP without Amlogic signatures", ""},
		{"unsigned u-boot", bootblobtest.UBoot(2, 600<<10), UBoot, "an unsigned u-boot.bin (an ARM64 U-Boot binary, not a signed FIP)", ""},
		{"arm64 binary", bootblobtest.UBoot(2, 600<<10)[:0x1000], ARM64, "a raw ARM64 binary", ""},
		{"armada 8k", a8k, Armada8K, "a Marvell Armada 8K boot image (flash-image.bin)", ""},
		{"random", bootblobtest.Random(4, 1<<20), Unknown, "unrecognised data", ""},
		{"empty", nil, Unknown, "unrecognised data", ""},
		{"sd image, BL2 digest broken", flip(sd, 0x2000), AmlogicSD, "signed Amlogic SD image", "BL2 @AML digest does not match"},
		{"sd image, BL33 broken", flip(sd, len(sd)-0x5000), AmlogicSD, "signed Amlogic SD image", "FIP entry BL33: @AML entry digest does not match"},
		{"sd image without BL33", noBL33(t), AmlogicSD, "FIP with BL2, BL30, BL301, BL31)", "no BL33"},
		{"hardkernel u-boot.bin broken", flip(hk, 0x4100), HardkernelFIP, "Hardkernel's u-boot.bin", "FIP entry BL30"},
		{"armada 8k, image checksum", flip(a8k, len(a8k)-8), Armada8K, "Armada 8K", "boot image checksum"},
		{"armada 8k, header checksum", flip(a8k, 24), Armada8K, "Armada 8K", "prolog checksum"},
		{"armada 8k, truncated", a8k[:len(a8k)-100], Armada8K, "Armada 8K", "the file has"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := Identify(tc.data)
			if in.Kind != tc.kind || !strings.Contains(in.What, tc.what) || !strings.Contains(in.Problem, tc.problem) || (tc.problem == "") != (in.Problem == "") {
				t.Errorf("got kind %d %q (problem %q), want kind %d %q (problem %q)", in.Kind, in.What, in.Problem, tc.kind, tc.what, tc.problem)
			}
		})
	}
}

func TestPrepareGXBB(t *testing.T) {
	f, err := Lookup("amlogic-gxbb-sd")
	if err != nil {
		t.Fatal(err)
	}
	sd := bootblobtest.SDImage(t, 5)
	bl1, hk := bootblobtest.HardkernelPair(t, 5)
	short := bl1[:0xA000]
	for _, tc := range []struct {
		name  string
		files []File
		want  []byte
		err   string
	}{
		{"sd image", []File{{"u-boot.bin.sd.bin", sd}}, sd, ""},
		{"boot image gets its SD sector", []File{{"u-boot.img", sd[512:]}}, sd, ""},
		{"hardkernel pair", []File{{"bl1.bin.hardkernel", bl1}, {"u-boot.bin", hk}}, sd, ""},
		{"hardkernel pair, other order", []File{{"u-boot.bin", hk}, {"bl1.bin.hardkernel", bl1}}, sd, ""},
		{"truncated bl1", []File{{"bl1", short}, {"u-boot.bin", hk}}, nil, "bl1 looks like Hardkernel's bl1.bin.hardkernel (signed BL2 without a FIP): pass Hardkernel's u-boot.bin too, but BL2 @AML header: inconsistent sizes"},
		{"random", []File{{"x.bin", bootblobtest.Random(1, 4096)}}, nil, "x.bin is unrecognised data; wanted a signed Amlogic SD image"},
		{"unsigned u-boot", []File{{"u-boot.bin", bootblobtest.UBoot(1, 1<<19)}}, nil, "u-boot.bin is an unsigned u-boot.bin (an ARM64 U-Boot binary, not a signed FIP)"},
		{"hardkernel u-boot.bin alone", []File{{"u-boot.bin", hk}}, nil, "Hardkernel's u-boot.bin (FIP without BL1): pass bl1.bin.hardkernel too"},
		{"bl1 alone", []File{{"bl1.bin.hardkernel", bl1}}, nil, "pass Hardkernel's u-boot.bin too"},
		{"pair with a random file", []File{{"bl1.bin.hardkernel", bl1}, {"junk", bootblobtest.Random(2, 100)}}, nil, "junk is unrecognised data; wanted Hardkernel's u-boot.bin"},
		{"two u-boot.bins", []File{{"a", hk}, {"b", hk}}, nil, "wanted Hardkernel's bl1.bin.hardkernel"},
		{"broken", []File{{"u-boot.bin.sd.bin", flip(sd, 0x3000)}}, nil, "u-boot.bin.sd.bin looks like a signed Amlogic SD image, but BL2 @AML digest does not match"},
		{"three files", []File{{"a", sd}, {"b", sd}, {"c", sd}}, nil, "3 bootloader files"},
		{"none", nil, nil, "no bootloader file"},
		{"armada image", []File{{"flash-image.bin", bootblobtest.Armada8K(make([]byte, 64))}}, nil, "is a Marvell Armada 8K boot image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := f.Prepare(tc.files)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want error containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Errorf("blob differs (%d bytes, want %d)", len(got), len(tc.want))
			}
		})
	}
}

func TestPrepareArmada8K(t *testing.T) {
	f, err := Lookup("armada-8k")
	if err != nil {
		t.Fatal(err)
	}
	img := bootblobtest.Armada8K(bootblobtest.Random(7, 2<<20))
	got, err := f.Prepare([]File{{"flash-image.bin", img}})
	if err != nil || !bytes.Equal(got, img) {
		t.Fatalf("flash-image.bin refused: %v", err)
	}
	for _, tc := range []struct {
		files []File
		want  string
	}{
		{[]File{{"random.bin", bootblobtest.Random(8, 1<<20)}}, "random.bin is unrecognised data; wanted a Marvell Armada 8K boot image (flash-image.bin)"},
		{[]File{{"u-boot.bin.sd.bin", bootblobtest.SDImage(t, 8)}}, "u-boot.bin.sd.bin is a signed Amlogic SD image"},
		{[]File{{"a", img}, {"b", img}}, "2 bootloader files"},
	} {
		if _, err := f.Prepare(tc.files); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
}

func TestLookupUnknown(t *testing.T) {
	if _, err := Lookup("floppy"); err == nil || !strings.Contains(err.Error(), "amlogic-gxbb-sd") {
		t.Fatalf("got %v", err)
	}
}

func TestSum32(t *testing.T) {
	b := make([]byte, 9)
	binary.LittleEndian.PutUint32(b, 0xFFFFFFFF)
	binary.LittleEndian.PutUint32(b[4:], 2)
	b[8] = 5
	if got := sum32(b); got != 6 {
		t.Errorf("sum32 = %d, want 6 (wrapping, short word zero-extended)", got)
	}
}

func FuzzIdentify(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("@AML"))
	f.Add(bootblobtest.Armada8K([]byte("payload")))
	f.Add(bootblobtest.UBoot(1, 256))
	hdr := make([]byte, 0x100)
	binary.LittleEndian.PutUint32(hdr, fip.Name)
	f.Add(hdr)
	sd := make([]byte, 0xC300)
	copy(sd[0x210:], "@AML")
	binary.LittleEndian.PutUint32(sd[0xC200:], fip.Name)
	f.Add(sd)
	f.Fuzz(func(t *testing.T, b []byte) {
		in := Identify(b)
		if in.What == "" {
			t.Fatal("no description")
		}
		if ff, _ := Lookup("amlogic-gxbb-sd"); ff != nil {
			ff.Prepare([]File{{"f", b}})
			ff.Prepare([]File{{"f", b}, {"g", b}})
		}
	})
}
