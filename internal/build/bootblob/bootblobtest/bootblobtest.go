// Package bootblobtest makes bootloader files of the right shape that boot
// nothing, for tests: random bytes of realistic sizes in place of vendor
// binaries, which are never committed.
package bootblobtest

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/mkimage/mkimage/internal/build/amlimage"
)

// GXBBParts are the inputs of an Odroid C2 boot image.
type GXBBParts struct {
	BL2, BL30, BL301, BL31, BL33 []byte
}

// Sizes of Hardkernel's odroidc2-v2015.01 blobs and Debian 12's BL31 and
// odroid-c2 u-boot.bin; the odd ones exercise the 16-byte padding.
const (
	BL2Size   = 0xC000 // bl2.package
	BL30Size  = 40584
	BL301Size = 6228
	BL31Size  = 36983
	BL33Size  = 685992
)

// Random returns n reproducible random bytes.
func Random(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], r.Uint64())
		copy(b[i:], w[:])
	}
	return b
}

// UBoot is an unsigned ARM64 U-Boot binary: a branch, random code and
// U-Boot's version string.
func UBoot(seed uint64, n int) []byte {
	b := Random(seed, n)
	binary.LittleEndian.PutUint32(b, 0x14000000|0x20) // b +0x80
	copy(b[n/2:], "U-Boot 2023.01+dfsg-2 (Jan 01 2023 - 00:00:00 +0000) odroid-c2")
	return b
}

// Parts returns random GXBB parts (BL33 a fake U-Boot).
func Parts(seed uint64) GXBBParts {
	return GXBBParts{
		BL2:   Random(seed+1, BL2Size),
		BL30:  Random(seed+2, BL30Size),
		BL301: Random(seed+3, BL301Size),
		BL31:  Random(seed+4, BL31Size),
		BL33:  UBoot(seed+5, BL33Size),
	}
}

// Image signs the parts into a boot image (u-boot.img).
func Image(t testing.TB, p GXBBParts) []byte {
	t.Helper()
	img, err := amlimage.Build(p.BL2, amlimage.GXBBImages(p.BL30, p.BL301, p.BL31, p.BL33))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// SDImage is a signed u-boot.bin.sd.bin.
func SDImage(t testing.TB, seed uint64) []byte {
	return amlimage.SDImage(Image(t, Parts(seed)))
}

// HardkernelPair returns files shaped like Hardkernel's
// bl1.bin.hardkernel (the SD sector and signed BL2, 0xC200 bytes) and
// u-boot.bin (the signed FIP, written at sector 97).
func HardkernelPair(t testing.TB, seed uint64) (bl1, uboot []byte) {
	sd := SDImage(t, seed)
	at := amlimage.SDPrefix + amlimage.FIPAt
	return sd[:at], sd[at:]
}

// Armada8K is a Marvell Armada 8K boot image around payload: a main
// header with magic 0xB105B002, an 8 KiB prolog and both checksums.
func Armada8K(payload []byte) []byte {
	const prolog = 8 << 10
	size := (len(payload) + 3) &^ 3
	b := make([]byte, prolog+size)
	le := binary.LittleEndian
	le.PutUint32(b, 0xB105B002)
	le.PutUint32(b[4:], prolog)
	le.PutUint32(b[12:], uint32(size))
	copy(b[prolog:], payload)
	le.PutUint32(b[16:], sum32(b[prolog:]))
	le.PutUint32(b[8:], sum32(b[:prolog]))
	return b
}

func sum32(b []byte) uint32 {
	var s uint32
	for i := 0; i+4 <= len(b); i += 4 {
		s += binary.LittleEndian.Uint32(b[i:])
	}
	return s
}
