// Package amlimage writes and checks Amlogic GXBB (S905) boot images: a
// BL2 and a FIP whose entries each carry an "@AML" header with a SHA-256
// digest, as Amlogic's aml_encrypt_gxb --bootsig writes them and
// meson-tools' amlbootsig reproduces them. The header fields' meanings
// are meson-tools' guesses (aml.h); what this package writes matches
// amlbootsig's reproducible output byte for byte.
//
// A boot image (u-boot.img) is laid out as:
//
//	0x0000  16 filler bytes
//	0x0010  @AML header of BL2 (64 bytes), digest area (512), padding
//	0x1000  BL2 (0xB000 bytes)
//	0xC000  FIP TOC (0x4000 bytes)
//	0x10000 FIP entries, each with an @AML header, 0x4000-aligned
//
// The SD card form (u-boot.bin.sd.bin) has one more sector in front,
// because the boot ROM reads an SD card from sector 1 on.
package amlimage

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mkimage/mkimage/internal/build/fip"
)

// Magic starts every header.
const Magic = "@AML"

// Layout of a boot image (see the package comment).
const (
	HeaderSize = 64
	// HeaderAt is where BL2's header starts in a boot image.
	HeaderAt = 16
	// BL2Max is the BL2 payload the header covers.
	BL2Max = 0xB000
	// FIPAt is where the FIP TOC starts in a boot image.
	FIPAt = 0xC000
	// TOCSize and Align are the TOC's size and the entries' alignment.
	TOCSize = 0x4000
	Align   = 0x4000
	// SDPrefix is the sector in front of a boot image on an SD card.
	SDPrefix = 512

	bl2DigestSize  = 512
	bl2PaddingSize = 0xDB0
	bl2Size        = HeaderSize + bl2DigestSize + bl2PaddingSize + BL2Max // 0xBFF0
	digestSize     = sha256.Size
	// entryHead is an entry's header plus digest; the payload's first
	// entryHead bytes move to the entry's end to make room for them.
	entryHead = HeaderSize + digestSize
	// tocSerial is what Hardkernel's fip_create writes.
	tocSerial = 0x12345678
	// idBase: amlbootsig numbers entry headers 0x42424200+i and fills
	// the first 16 bytes with 0x42 where Amlogic's tool uses random
	// values, so the output is reproducible.
	idBase = 0x42424200
	filler = 0x42
)

// Header is an @AML header, little-endian, 64 bytes.
type Header struct {
	Magic         [4]byte
	Size          uint32
	HeaderSize    uint16
	HeaderVersion uint16
	ID            uint32
	Encrypted     uint32
	DigestOffset  uint32
	DigestSize    uint32
	DataOffset    uint32
	DataSize      uint32
	PaddingOffset uint32
	PaddingSize   uint32
	Offset2       uint32
	Pad2          uint32
	PayloadOffset uint32
	PayloadSize   uint32
	Unknown       uint32
}

func (h *Header) marshal() []byte {
	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, h)
	return buf.Bytes()
}

// ErrNoHeader is returned by ParseHeader for data without "@AML".
var ErrNoHeader = errors.New("no @AML header")

// ParseHeader reads the header at the start of b.
func ParseHeader(b []byte) (*Header, error) {
	if len(b) < HeaderSize || string(b[:4]) != Magic {
		return nil, ErrNoHeader
	}
	var h Header
	binary.Read(bytes.NewReader(b[:HeaderSize]), binary.LittleEndian, &h)
	return &h, nil
}

// Image is one FIP entry to sign.
type Image struct {
	UUID fip.UUID
	Data []byte
}

// GXBBImages orders the FIP entries as the GXBB BL2 expects them: it
// loads them by position, not UUID (meson-tools issue 3), BL30 then
// BL301, BL31, BL33.
func GXBBImages(bl30, bl301, bl31, bl33 []byte) []Image {
	return []Image{{fip.BL30, bl30}, {fip.BL301, bl301}, {fip.BL31, bl31}, {fip.BL33, bl33}}
}

// Build signs bl2 and the images into a boot image (u-boot.img). bl2 is
// bl2.bin or Hardkernel's bl2.package (0xC000 bytes: bl2 and bl21, each
// padded). Like aml_encrypt_gxb, only its first BL2Max bytes go in; the
// package's last 4 KiB are cut off. TOC offsets are those of the signed
// entries.
func Build(bl2 []byte, images []Image) ([]byte, error) {
	if len(bl2) > FIPAt {
		return nil, fmt.Errorf("BL2 is %d bytes; a GXBB BL2 package has at most %d (0x%X)", len(bl2), FIPAt, FIPAt)
	}
	if _, err := ParseHeader(bl2); err == nil || (len(bl2) > HeaderAt && bytes.HasPrefix(bl2[HeaderAt:], []byte(Magic))) {
		return nil, errors.New("BL2 already carries an @AML header (is it a signed image?)")
	}
	out := signBL2(bl2)
	toc := &fip.TOC{Serial: tocSerial}
	off := uint64(TOCSize)
	var body []byte
	for i, im := range images {
		e, err := signEntry(im.Data, uint32(idBase+i))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", im.UUID.Name(), err)
		}
		toc.Entries = append(toc.Entries, fip.Entry{UUID: im.UUID, Offset: off, Size: uint64(len(e))})
		padded := roundUp(len(e), Align)
		body = append(body, e...)
		body = append(body, make([]byte, padded-len(e))...)
		off += uint64(padded)
	}
	toc.End = off
	tb, err := toc.Marshal(TOCSize)
	if err != nil {
		return nil, err
	}
	out = append(out, tb...)
	return append(out, body...), nil
}

// SDImage puts a boot image in its SD card form. The boot ROM reads the
// card from sector 1; sector 0 gets a copy of the image's first sector,
// as in Amlogic's u-boot.bin.sd.bin, of which a card keeps only the boot
// code bytes in front of the partition table.
func SDImage(img []byte) []byte {
	out := make([]byte, 0, SDPrefix+len(img))
	out = append(out, img[:min(SDPrefix, len(img))]...)
	out = append(out, make([]byte, SDPrefix-len(out))...)
	return append(out, img...)
}

// signBL2 returns the first FIPAt bytes of a boot image.
func signBL2(bl2 []byte) []byte {
	h := Header{
		Size:          bl2Size,
		HeaderSize:    HeaderSize,
		HeaderVersion: 1,
		DigestOffset:  HeaderSize,
		DigestSize:    bl2DigestSize,
		DataOffset:    entryHead,
		PaddingOffset: HeaderSize + bl2DigestSize,
		PaddingSize:   bl2PaddingSize,
		Offset2:       bl2Size - entryHead,
		PayloadOffset: HeaderSize + bl2DigestSize + bl2PaddingSize,
		PayloadSize:   BL2Max,
	}
	copy(h.Magic[:], Magic)
	out := bytes.Repeat([]byte{filler}, HeaderAt)
	buf := make([]byte, bl2Size)
	copy(buf, h.marshal())
	copy(buf[h.PayloadOffset:], bl2[:min(len(bl2), BL2Max)])
	d := sha256.New()
	d.Write(buf[:HeaderSize])
	d.Write(buf[h.DataOffset : h.DataOffset+h.Offset2])
	copy(buf[h.DigestOffset:], d.Sum(nil))
	return append(out, buf...)
}

// signEntry returns one signed FIP entry: header, digest, the payload
// from byte entryHead on (zero-padded to 16 bytes), then the payload's
// first entryHead bytes. The digest covers the header and the padded
// payload in its original order.
func signEntry(p []byte, id uint32) ([]byte, error) {
	if len(p) < entryHead {
		return nil, fmt.Errorf("%d bytes is too small to sign (at least %d)", len(p), entryHead)
	}
	if bytes.HasPrefix(p[HeaderAt:], []byte(Magic)) || bytes.HasPrefix(p, []byte(Magic)) {
		return nil, errors.New("already carries an @AML header")
	}
	padded := roundUp(len(p), 16)
	h := Header{
		Size:          uint32(entryHead + padded),
		HeaderSize:    HeaderSize,
		HeaderVersion: 1,
		ID:            id,
		DigestOffset:  HeaderSize,
		DigestSize:    digestSize,
		DataOffset:    entryHead,
		PaddingOffset: entryHead,
		Offset2:       uint32(padded),
		PayloadOffset: entryHead,
		PayloadSize:   uint32(padded),
	}
	copy(h.Magic[:], Magic)
	body := make([]byte, padded)
	copy(body, p)
	hb := h.marshal()
	d := sha256.New()
	d.Write(hb)
	d.Write(body)
	out := make([]byte, 0, h.Size)
	out = append(out, hb...)
	out = d.Sum(out)
	out = append(out, body[entryHead:]...)
	return append(out, body[:entryHead]...), nil
}

// CheckBL2 checks the BL2 header and digest of a boot image (img starts
// at the filler bytes, not at the SD prefix).
func CheckBL2(img []byte) error {
	if len(img) < HeaderAt {
		return ErrNoHeader
	}
	h, err := ParseHeader(img[HeaderAt:])
	if err != nil {
		return err
	}
	b := img[HeaderAt:]
	if h.HeaderSize != HeaderSize || h.DigestOffset != HeaderSize || uint64(h.DataOffset)+uint64(h.Offset2) > uint64(len(b)) || h.DigestOffset+digestSize > h.DataOffset {
		return fmt.Errorf("BL2 @AML header: inconsistent sizes (data 0x%X+0x%X, %d bytes present)", h.DataOffset, h.Offset2, len(b))
	}
	if h.Encrypted != 0 {
		return errors.New("BL2 is encrypted (a secure-boot image for fused boards)")
	}
	d := sha256.New()
	d.Write(b[:HeaderSize])
	d.Write(b[h.DataOffset : h.DataOffset+h.Offset2])
	if !bytes.Equal(d.Sum(nil), b[h.DigestOffset:h.DigestOffset+digestSize]) {
		return errors.New("BL2 @AML digest does not match its data")
	}
	return nil
}

// CheckEntry checks a signed FIP entry's header and digest and returns
// its payload in original order (zero-padded to 16 bytes).
func CheckEntry(b []byte) ([]byte, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return nil, err
	}
	if h.HeaderSize != HeaderSize || h.DigestOffset != HeaderSize || h.DigestSize != digestSize ||
		h.PayloadOffset != entryHead || uint64(h.Size) > uint64(len(b)) || h.Size < 2*entryHead || uint64(h.PayloadSize)+entryHead != uint64(h.Size) {
		return nil, fmt.Errorf("@AML entry header: inconsistent sizes (size 0x%X, payload 0x%X at 0x%X, %d bytes present)", h.Size, h.PayloadSize, h.PayloadOffset, len(b))
	}
	if h.Encrypted != 0 {
		return nil, errors.New("entry is encrypted")
	}
	b = b[:h.Size]
	p := make([]byte, 0, h.PayloadSize)
	p = append(p, b[h.Size-entryHead:]...)
	p = append(p, b[entryHead:h.Size-entryHead]...)
	d := sha256.New()
	d.Write(b[:HeaderSize])
	d.Write(p)
	if !bytes.Equal(d.Sum(nil), b[HeaderSize:entryHead]) {
		return nil, errors.New("@AML entry digest does not match its data")
	}
	return p, nil
}

func roundUp(n, a int) int { return (n + a - 1) / a * a }
