// Package uboot writes what U-Boot reads from a boot partition or a TFTP
// server: the legacy script image (boot.scr), extlinux.conf, the boot
// script text for U-Boot builds without extlinux support, the counting
// boot script that picks a version by internal/bootstate's state file,
// and pxelinux configuration files. It knows nothing of boards; callers pass paths and
// arguments.
package uboot

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"
)

// Legacy image header values (U-Boot include/image.h).
const (
	Magic      = 0x27051956
	HeaderSize = 64
	NameLen    = 32

	OSLinux    = 5
	ArchARM64  = 22
	TypeScript = 6
	CompNone   = 0
)

// Header is the 64-byte big-endian legacy image header.
type Header struct {
	Magic     uint32 `json:"magic"`
	HeaderCRC uint32 `json:"header_crc"`
	Time      uint32 `json:"time"`
	Size      uint32 `json:"size"`
	Load      uint32 `json:"load"`
	Entry     uint32 `json:"entry"`
	DataCRC   uint32 `json:"data_crc"`
	OS        uint8  `json:"os"`
	Arch      uint8  `json:"arch"`
	Type      uint8  `json:"type"`
	Comp      uint8  `json:"comp"`
	Name      string `json:"name"`
}

func (h *Header) marshal() []byte {
	b := make([]byte, HeaderSize)
	be := binary.BigEndian
	be.PutUint32(b[0:], h.Magic)
	be.PutUint32(b[4:], h.HeaderCRC)
	be.PutUint32(b[8:], h.Time)
	be.PutUint32(b[12:], h.Size)
	be.PutUint32(b[16:], h.Load)
	be.PutUint32(b[20:], h.Entry)
	be.PutUint32(b[24:], h.DataCRC)
	b[28], b[29], b[30], b[31] = h.OS, h.Arch, h.Type, h.Comp
	copy(b[32:], h.Name)
	return b
}

// ScriptImage wraps a U-Boot script in a legacy image, as
// `mkimage -A arm64 -O linux -T script -C none -n NAME -d script` does with
// SOURCE_DATE_EPOCH set to epoch. The payload is a length table (the
// script's length, then a zero word) followed by the script.
func ScriptImage(name, script string, epoch time.Time) ([]byte, error) {
	if len(name) > NameLen {
		return nil, fmt.Errorf("boot script image name %q is %d bytes; the header holds at most %d", name, len(name), NameLen)
	}
	sec := epoch.Unix()
	if sec < 0 || sec > 0xffffffff {
		return nil, fmt.Errorf("boot script time %s does not fit the image header's 32-bit seconds", epoch.UTC().Format(time.RFC3339))
	}
	if uint64(len(script))+8 > 0xffffffff {
		return nil, fmt.Errorf("boot script is %d bytes; too large for a legacy image", len(script))
	}
	payload := make([]byte, 8+len(script))
	binary.BigEndian.PutUint32(payload[0:], uint32(len(script)))
	copy(payload[8:], script)
	h := Header{
		Magic: Magic, Time: uint32(sec), Size: uint32(len(payload)),
		DataCRC: crc32.ChecksumIEEE(payload),
		OS:      OSLinux, Arch: ArchARM64, Type: TypeScript, Comp: CompNone,
		Name: name,
	}
	h.HeaderCRC = crc32.ChecksumIEEE(h.marshal())
	return append(h.marshal(), payload...), nil
}

// ParseImage checks a legacy image (magic, both CRCs, size) and returns its
// header and payload.
func ParseImage(b []byte) (Header, []byte, error) {
	var h Header
	if len(b) < HeaderSize {
		return h, nil, fmt.Errorf("legacy image is %d bytes, shorter than its %d-byte header", len(b), HeaderSize)
	}
	be := binary.BigEndian
	h = Header{
		Magic: be.Uint32(b[0:]), HeaderCRC: be.Uint32(b[4:]), Time: be.Uint32(b[8:]),
		Size: be.Uint32(b[12:]), Load: be.Uint32(b[16:]), Entry: be.Uint32(b[20:]),
		DataCRC: be.Uint32(b[24:]), OS: b[28], Arch: b[29], Type: b[30], Comp: b[31],
	}
	name := b[32:64]
	for i, c := range name {
		if c == 0 {
			name = name[:i]
			break
		}
	}
	h.Name = string(name)
	if h.Magic != Magic {
		return h, nil, fmt.Errorf("legacy image magic is %#08x, want %#08x", h.Magic, Magic)
	}
	hdr := append([]byte(nil), b[:HeaderSize]...)
	clear(hdr[4:8])
	if got := crc32.ChecksumIEEE(hdr); got != h.HeaderCRC {
		return h, nil, fmt.Errorf("legacy image header CRC is %#08x, computed %#08x", h.HeaderCRC, got)
	}
	if int64(len(b)-HeaderSize) < int64(h.Size) {
		return h, nil, fmt.Errorf("legacy image header says %d data bytes, only %d follow", h.Size, len(b)-HeaderSize)
	}
	data := b[HeaderSize : HeaderSize+int(h.Size)]
	if got := crc32.ChecksumIEEE(data); got != h.DataCRC {
		return h, nil, fmt.Errorf("legacy image data CRC is %#08x, computed %#08x", h.DataCRC, got)
	}
	return h, data, nil
}

// ScriptText returns the script of a parsed script image's payload.
func ScriptText(payload []byte) (string, error) {
	if len(payload) < 8 {
		return "", fmt.Errorf("script payload is %d bytes, too short for its length table", len(payload))
	}
	n := binary.BigEndian.Uint32(payload)
	if binary.BigEndian.Uint32(payload[4:]) != 0 {
		return "", fmt.Errorf("script payload has more than one part")
	}
	if uint64(n) > uint64(len(payload)-8) {
		return "", fmt.Errorf("script length %d exceeds the payload's %d bytes", n, len(payload)-8)
	}
	return string(payload[8 : 8+n]), nil
}
