package amlimage_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/build/amlimage"
	"github.com/mkimage/mkimage/internal/build/bootblob/bootblobtest"
	"github.com/mkimage/mkimage/internal/build/fip"
)

// The checks below parse the output with their own offsets and field
// layouts (meson-tools aml.h, ATF firmware_image_package.h), not with
// the package's reader, so a shared mistake cannot hide.

var le = binary.LittleEndian

// amlHeader is the test's own reading of a 64-byte @AML header.
type amlHeader struct {
	size, id, encrypted                                     uint32
	headerSize, version                                     uint16
	digestOff, digestSize, dataOff, dataSize, padOff, padSz uint32
	offset2, payloadOff, payloadSize                        uint32
}

func readAML(t *testing.T, b []byte, at int) amlHeader {
	t.Helper()
	if string(b[at:at+4]) != "@AML" {
		t.Fatalf("no @AML at 0x%X: % x", at, b[at:at+4])
	}
	h := b[at : at+64]
	return amlHeader{
		size: le.Uint32(h[4:]), headerSize: le.Uint16(h[8:]), version: le.Uint16(h[10:]),
		id: le.Uint32(h[12:]), encrypted: le.Uint32(h[16:]),
		digestOff: le.Uint32(h[20:]), digestSize: le.Uint32(h[24:]),
		dataOff: le.Uint32(h[28:]), dataSize: le.Uint32(h[32:]),
		padOff: le.Uint32(h[36:]), padSz: le.Uint32(h[40:]),
		offset2: le.Uint32(h[44:]), payloadOff: le.Uint32(h[52:]), payloadSize: le.Uint32(h[56:]),
	}
}

type tocEntry struct {
	uuid         string
	offset, size uint64
}

func readTOC(t *testing.T, b []byte) (serial uint32, entries []tocEntry, end uint64) {
	t.Helper()
	if le.Uint32(b) != 0xAA640001 {
		t.Fatalf("TOC name 0x%08X", le.Uint32(b))
	}
	if le.Uint64(b[8:]) != 0 {
		t.Errorf("TOC flags 0x%X", le.Uint64(b[8:]))
	}
	for at := 16; ; at += 40 {
		u := hex.EncodeToString(b[at : at+16])
		off, size := le.Uint64(b[at+16:]), le.Uint64(b[at+24:])
		if le.Uint64(b[at+32:]) != 0 {
			t.Errorf("entry flags at 0x%X", at)
		}
		if u == strings.Repeat("0", 32) {
			return le.Uint32(b[4:]), entries, off
		}
		entries = append(entries, tocEntry{u, off, size})
	}
}

func roundUp(n, a int) int { return (n + a - 1) / a * a }

func TestBuildLayout(t *testing.T) {
	p := bootblobtest.Parts(1)
	img := bootblobtest.Image(t, p)

	// BL2: 16 filler bytes, then the header amlbootsig writes.
	if !bytes.Equal(img[:16], bytes.Repeat([]byte{0x42}, 16)) {
		t.Errorf("filler % x", img[:16])
	}
	h := readAML(t, img, 0x10)
	want := amlHeader{size: 0xBFF0, headerSize: 64, version: 1, digestOff: 64, digestSize: 512, dataOff: 96,
		padOff: 576, padSz: 0xDB0, offset2: 0xBFF0 - 96, payloadOff: 0xFF0, payloadSize: 0xB000}
	if h != want {
		t.Errorf("BL2 header\n got %+v\nwant %+v", h, want)
	}
	bl2 := img[0x10 : 0x10+0xBFF0]
	if !bytes.Equal(bl2[0xFF0:], p.BL2[:0xB000]) {
		t.Error("BL2 payload is not bl2.package's first 0xB000 bytes")
	}
	d := sha256.New()
	d.Write(bl2[:64])
	d.Write(bl2[96:])
	if !bytes.Equal(d.Sum(nil), bl2[64:96]) {
		t.Error("BL2 digest does not match")
	}
	if !bytes.Equal(bl2[96:0xFF0], make([]byte, 0xFF0-96)) {
		t.Error("BL2 digest area and padding are not zero")
	}

	// FIP: TOC at 0xC000, entries BL30, BL301, BL31, BL33 in that order,
	// 0x4000-aligned and back to back.
	serial, es, end := readTOC(t, img[0xC000:])
	if serial != 0x12345678 {
		t.Errorf("TOC serial 0x%X", serial)
	}
	payloads := [][]byte{p.BL30, p.BL301, p.BL31, p.BL33}
	uuids := []string{
		"9766fd3d89bee849ae5d78a140608213", // SCP_BL2 (BL30)
		"ddccbbaacdabefefabcd12345678abcd", // Amlogic BL301
		"47d4086d4cfe98469b952950cbbd5a00", // BL31
		"d6d0eea7fcead54b97829934f234b6e4", // BL33
	}
	if len(es) != len(uuids) {
		t.Fatalf("%d TOC entries, want %d", len(es), len(uuids))
	}
	next := uint64(0x4000)
	fipData := img[0xC000:]
	for i, e := range es {
		if e.uuid != uuids[i] {
			t.Errorf("entry %d uuid %s, want %s", i, e.uuid, uuids[i])
		}
		if e.offset != next || e.offset%0x4000 != 0 {
			t.Errorf("entry %d at 0x%X, want 0x%X", i, e.offset, next)
		}
		padded := roundUp(len(payloads[i]), 16)
		if e.size != uint64(96+padded) {
			t.Errorf("entry %d size 0x%X, want 0x%X", i, e.size, 96+padded)
		}
		b := fipData[e.offset : e.offset+e.size]
		h := readAML(t, b, 0)
		want := amlHeader{size: uint32(e.size), headerSize: 64, version: 1, id: 0x42424200 + uint32(i), digestOff: 64, digestSize: 32,
			dataOff: 96, padOff: 96, offset2: uint32(padded), payloadOff: 96, payloadSize: uint32(padded)}
		if h != want {
			t.Errorf("entry %d header\n got %+v\nwant %+v", i, h, want)
		}
		// The payload's first 96 bytes sit at the entry's end.
		orig := append(append([]byte{}, b[len(b)-96:]...), b[96:len(b)-96]...)
		wantPayload := append(append([]byte{}, payloads[i]...), make([]byte, padded-len(payloads[i]))...)
		if !bytes.Equal(orig, wantPayload) {
			t.Errorf("entry %d payload differs", i)
		}
		d := sha256.New()
		d.Write(b[:64])
		d.Write(orig)
		if !bytes.Equal(d.Sum(nil), b[64:96]) {
			t.Errorf("entry %d digest does not match", i)
		}
		stop := e.offset + uint64(roundUp(int(e.size), 0x4000))
		if !bytes.Equal(fipData[e.offset+e.size:stop], make([]byte, stop-e.offset-e.size)) {
			t.Errorf("entry %d: alignment padding is not zero", i)
		}
		next = stop
	}
	if end != next || uint64(len(fipData)) != next {
		t.Errorf("TOC end 0x%X, FIP %d bytes, want 0x%X", end, len(fipData), next)
	}
}

func TestSDImage(t *testing.T) {
	img := bootblobtest.Image(t, bootblobtest.Parts(2))
	sd := amlimage.SDImage(img)
	if !bytes.Equal(sd[512:], img) || !bytes.Equal(sd[:512], img[:512]) {
		t.Error("SD image is not the first sector then the image")
	}
	readAML(t, sd, 0x10)
	readAML(t, sd, 0x210)
	readTOC(t, sd[0xC200:])
}

func TestBuildReproducible(t *testing.T) {
	a := bootblobtest.Image(t, bootblobtest.Parts(3))
	b := bootblobtest.Image(t, bootblobtest.Parts(3))
	if !bytes.Equal(a, b) {
		t.Error("same inputs, different images")
	}
}

func TestBuildRejects(t *testing.T) {
	p := bootblobtest.Parts(4)
	signed := bootblobtest.Image(t, p)
	for _, tc := range []struct {
		name string
		bl2  []byte
		ims  []amlimage.Image
		want string
	}{
		{"BL2 too big", make([]byte, 0xC001), amlimage.GXBBImages(p.BL30, p.BL301, p.BL31, p.BL33), "at most"},
		{"signed BL2", signed[:0xC000], amlimage.GXBBImages(p.BL30, p.BL301, p.BL31, p.BL33), "already carries"},
		{"tiny entry", p.BL2, amlimage.GXBBImages(p.BL30, make([]byte, 95), p.BL31, p.BL33), "BL301: 95 bytes is too small"},
		{"signed entry", p.BL2, amlimage.GXBBImages(p.BL30, p.BL301, p.BL31, signed[0x10000:0x1A000]), "BL33: already carries"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := amlimage.Build(tc.bl2, tc.ims)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	img := bootblobtest.Image(t, bootblobtest.Parts(5))
	if err := amlimage.CheckBL2(img); err != nil {
		t.Fatal(err)
	}
	toc, err := fip.Parse(img[amlimage.FIPAt:])
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range toc.Entries {
		if _, err := amlimage.CheckEntry(fip.Payload(img[amlimage.FIPAt:], e)); err != nil {
			t.Errorf("%s: %v", e.UUID.Name(), err)
		}
	}
	bad := append([]byte(nil), img...)
	bad[0x2000] ^= 1
	if err := amlimage.CheckBL2(bad); err == nil || !strings.Contains(err.Error(), "digest") {
		t.Errorf("flipped BL2 byte: %v", err)
	}
	e := toc.Entries[3]
	bad = append([]byte(nil), img[amlimage.FIPAt:]...)
	bad[e.Offset+e.Size-1] ^= 1
	if _, err := amlimage.CheckEntry(fip.Payload(bad, e)); err == nil || !strings.Contains(err.Error(), "digest") {
		t.Errorf("flipped BL33 byte: %v", err)
	}
	if _, err := amlimage.CheckEntry(fip.Payload(bad, e)[:100]); err == nil {
		t.Error("truncated entry accepted")
	}
}
