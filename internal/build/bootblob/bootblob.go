// Package bootblob recognises bootloader files (signed Amlogic images,
// Hardkernel's split files, ATF FIPs, U-Boot binaries, Marvell Armada 8K
// boot images) and turns what a user gives into the one blob a boot
// format wants. It knows formats, not boards: a board names its format.
package bootblob

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/mkimage/mkimage/internal/build/amlimage"
	"github.com/mkimage/mkimage/internal/build/fip"
)

// Kind is what a file is.
type Kind int

const (
	Unknown Kind = iota
	// AmlogicSD is a signed GXBB image in SD card form (u-boot.bin.sd.bin).
	AmlogicSD
	// AmlogicImage is a signed GXBB image without the SD sector in front
	// (aml_encrypt_gxb's or amlbootsig's u-boot.img / u-boot.bin).
	AmlogicImage
	// HardkernelFIP is a signed FIP without BL2: Hardkernel's u-boot.bin
	// (u-boot.gxbb), written at sector 97 after bl1.bin.hardkernel.
	HardkernelFIP
	// HardkernelBL1 is bl1.bin.hardkernel: the SD sector and signed BL2,
	// without a FIP.
	HardkernelBL1
	// AmlogicBL2 is a signed BL2 alone, without the SD sector or a FIP.
	AmlogicBL2
	// FIP is an ATF FIP whose entries carry no Amlogic signature.
	FIP
	// UBoot is an unsigned ARM64 U-Boot binary.
	UBoot
	// ARM64 is another raw ARM64 binary (starts with a branch).
	ARM64
	// Armada8K is a Marvell Armada 8K boot image (flash-image.bin).
	Armada8K
)

// Info says what a file is, in words for error messages.
type Info struct {
	Kind Kind
	// What describes the file, e.g. "a signed Amlogic SD image (FIP with
	// BL2, BL30, BL301, BL31, BL33)".
	What string
	// Problem, when not empty, says why a file of a usable kind is
	// broken (a digest that does not match, a truncated entry).
	Problem string
}

func (i Info) String() string {
	if i.Problem != "" {
		return i.What + ", but " + i.Problem
	}
	return i.What
}

// Identify looks at a file's bytes. It never fails: what it cannot name
// is "unrecognised data".
func Identify(b []byte) Info {
	switch {
	case hasAML(b, amlimage.SDPrefix+amlimage.HeaderAt) && len(b) > amlimage.SDPrefix+amlimage.FIPAt && isFIP(b[amlimage.SDPrefix+amlimage.FIPAt:]):
		return amlogic(AmlogicSD, "a signed Amlogic SD image", b[amlimage.SDPrefix:])
	case hasAML(b, amlimage.HeaderAt) && len(b) > amlimage.FIPAt && isFIP(b[amlimage.FIPAt:]):
		return amlogic(AmlogicImage, "a signed Amlogic boot image without the SD card's first sector (u-boot.img)", b)
	case hasAML(b, amlimage.SDPrefix+amlimage.HeaderAt):
		in := Info{Kind: HardkernelBL1, What: "Hardkernel's bl1.bin.hardkernel (signed BL2 without a FIP): pass Hardkernel's u-boot.bin too"}
		if err := amlimage.CheckBL2(b[amlimage.SDPrefix:]); err != nil {
			in.Problem = err.Error()
		}
		return in
	case hasAML(b, amlimage.HeaderAt):
		in := Info{Kind: AmlogicBL2, What: "a signed Amlogic BL2 without a FIP"}
		if err := amlimage.CheckBL2(b); err != nil {
			in.Problem = err.Error()
		}
		return in
	case isFIP(b):
		return fipInfo(b)
	case isArmada8K(b):
		in := Info{Kind: Armada8K, What: "a Marvell Armada 8K boot image (flash-image.bin)"}
		if err := checkArmada8K(b); err != nil {
			in.Problem = err.Error()
		}
		return in
	case isARM64Branch(b):
		if bytes.Contains(b, []byte("U-Boot ")) {
			return Info{Kind: UBoot, What: "an unsigned u-boot.bin (an ARM64 U-Boot binary, not a signed FIP)"}
		}
		return Info{Kind: ARM64, What: "a raw ARM64 binary (not a signed FIP)"}
	}
	return Info{Kind: Unknown, What: "unrecognised data"}
}

func hasAML(b []byte, at int) bool {
	return len(b) >= at+amlimage.HeaderSize && string(b[at:at+4]) == amlimage.Magic
}

func isFIP(b []byte) bool { return len(b) >= 4 && binary.LittleEndian.Uint32(b) == fip.Name }

// amlogic describes a signed boot image (img starts at the filler bytes).
func amlogic(k Kind, what string, img []byte) Info {
	in := Info{Kind: k, What: what}
	if err := amlimage.CheckBL2(img); err != nil {
		in.Problem = err.Error()
		return in
	}
	names, err := signedEntries(img[amlimage.FIPAt:])
	in.What += " (FIP with BL2, " + strings.Join(names, ", ") + ")"
	if err != nil {
		in.Problem = err.Error()
	}
	return in
}

// signedEntries checks every entry of a signed FIP and names them.
func signedEntries(b []byte) ([]string, error) {
	t, err := fip.Parse(b)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range t.Entries {
		names = append(names, e.UUID.Name())
	}
	if len(t.Entries) == 0 {
		return names, errors.New("its FIP TOC has no entries")
	}
	// The GXBB BL2 loads entries by position, not UUID (NixOS builds
	// label BL30 as BL2), so only BL33's presence is required.
	if !slices.ContainsFunc(t.Entries, func(e fip.Entry) bool { return e.UUID == fip.BL33 }) {
		return names, errors.New("its FIP has no BL33 (U-Boot) entry")
	}
	for _, e := range t.Entries {
		if _, err := amlimage.CheckEntry(fip.Payload(b, e)); err != nil {
			return names, fmt.Errorf("FIP entry %s: %w", e.UUID.Name(), err)
		}
	}
	return names, nil
}

func fipInfo(b []byte) Info {
	t, err := fip.Parse(b)
	if err != nil {
		return Info{Kind: FIP, What: "an ARM Trusted Firmware FIP", Problem: err.Error()}
	}
	signed := 0
	for _, e := range t.Entries {
		if bytes.HasPrefix(fip.Payload(b, e), []byte(amlimage.Magic)) {
			signed++
		}
	}
	if signed == 0 || len(t.Entries) == 0 {
		return Info{Kind: FIP, What: "a plain ARM Trusted Firmware FIP without Amlogic signatures"}
	}
	in := Info{Kind: HardkernelFIP, What: "Hardkernel's u-boot.bin (FIP without BL1): pass bl1.bin.hardkernel too"}
	if _, err := signedEntries(b); err != nil {
		in.Problem = err.Error()
	}
	return in
}

// isARM64Branch: an AArch64 image that starts executing at its first
// word starts with an unconditional branch (B, opcode 0b000101).
func isARM64Branch(b []byte) bool {
	return len(b) >= 4 && binary.LittleEndian.Uint32(b)>>26 == 0b000101
}

// Armada 8K main header (ATF tools/marvell/doimage): magic, prolog size,
// prolog checksum, boot image size, boot image checksum, ... 64 bytes,
// little-endian. The prolog (header and extensions) is 8 KiB-aligned;
// each checksum is the 32-bit sum of the words it covers.
const (
	a8kMagic       = 0xB105B002
	a8kHeaderSize  = 64
	a8kPrologAlign = 8 << 10
)

func isArmada8K(b []byte) bool {
	return len(b) >= a8kHeaderSize && binary.LittleEndian.Uint32(b) == a8kMagic
}

func checkArmada8K(b []byte) error {
	prolog := uint64(binary.LittleEndian.Uint32(b[4:]))
	image := uint64(binary.LittleEndian.Uint32(b[12:]))
	if prolog < a8kHeaderSize || prolog%a8kPrologAlign != 0 {
		return fmt.Errorf("prolog size %d is not a multiple of 8 KiB", prolog)
	}
	if prolog+image > uint64(len(b)) {
		return fmt.Errorf("header says %d bytes, the file has %d", prolog+image, len(b))
	}
	p := append([]byte(nil), b[:prolog]...)
	binary.LittleEndian.PutUint32(p[8:], 0)
	if got, want := sum32(p), binary.LittleEndian.Uint32(b[8:]); got != want {
		return fmt.Errorf("prolog checksum 0x%08X, header says 0x%08X", got, want)
	}
	if got, want := sum32(b[prolog:prolog+image]), binary.LittleEndian.Uint32(b[16:]); got != want {
		return fmt.Errorf("boot image checksum 0x%08X, header says 0x%08X", got, want)
	}
	return nil
}

// sum32 adds little-endian 32-bit words; a short last word is
// zero-extended.
func sum32(b []byte) uint32 {
	var s uint32
	for len(b) >= 4 {
		s += binary.LittleEndian.Uint32(b)
		b = b[4:]
	}
	if len(b) > 0 {
		var w [4]byte
		copy(w[:], b)
		s += binary.LittleEndian.Uint32(w[:])
	}
	return s
}

// File is one named input.
type File struct {
	Name string
	Data []byte
}

// Format is a boot format a board can name.
type Format struct {
	Name string
	// Want describes what the format takes, for messages.
	Want    string
	prepare func(f *Format, files []File, infos []Info) ([]byte, error)
}

var formats = map[string]*Format{
	"amlogic-gxbb-sd": {
		Name:    "amlogic-gxbb-sd",
		Want:    "a signed Amlogic SD image (u-boot.bin.sd.bin), or Hardkernel's bl1.bin.hardkernel and u-boot.bin together",
		prepare: prepareGXBB,
	},
	"armada-8k": {
		Name:    "armada-8k",
		Want:    "a Marvell Armada 8K boot image (flash-image.bin)",
		prepare: prepareArmada8K,
	},
}

// Formats lists the known format names, sorted.
func Formats() []string {
	var n []string
	for k := range formats {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// Lookup returns the named format.
func Lookup(name string) (*Format, error) {
	f, ok := formats[name]
	if !ok {
		return nil, fmt.Errorf("unknown bootloader format %q (known: %s)", name, strings.Join(Formats(), ", "))
	}
	return f, nil
}

// Prepare checks the files against the format and returns the one blob
// that goes on the card (its bytes are placed by the board's rule). An
// error names the file and what it looks like.
func (f *Format) Prepare(files []File) ([]byte, error) {
	if len(files) == 0 {
		return nil, errors.New("no bootloader file given")
	}
	infos := make([]Info, len(files))
	for i, fl := range files {
		infos[i] = Identify(fl.Data)
		if infos[i].Problem != "" {
			return nil, fmt.Errorf("%s looks like %s", fl.Name, infos[i])
		}
	}
	return f.prepare(f, files, infos)
}

func refuse(fl File, in Info, want string) error {
	return fmt.Errorf("%s is %s; wanted %s", fl.Name, in, want)
}

func prepareGXBB(f *Format, files []File, infos []Info) ([]byte, error) {
	want := f.Want
	switch len(files) {
	case 1:
		switch infos[0].Kind {
		case AmlogicSD:
			return files[0].Data, nil
		case AmlogicImage:
			return amlimage.SDImage(files[0].Data), nil
		}
		return nil, refuse(files[0], infos[0], want)
	case 2:
		bl1, uboot := 0, 1
		if infos[0].Kind == HardkernelFIP {
			bl1, uboot = 1, 0
		}
		if infos[bl1].Kind != HardkernelBL1 {
			return nil, refuse(files[bl1], infos[bl1], "Hardkernel's bl1.bin.hardkernel beside "+files[uboot].Name)
		}
		if infos[uboot].Kind != HardkernelFIP {
			return nil, refuse(files[uboot], infos[uboot], "Hardkernel's u-boot.bin (a signed FIP) beside "+files[bl1].Name)
		}
		return hardkernelPair(files[bl1].Data, files[uboot].Data), nil
	}
	return nil, fmt.Errorf("%d bootloader files given; wanted %s", len(files), want)
}

// hardkernelPair lays the pair out as Hardkernel's sd_fusing.sh writes
// them, in one blob: bl1.bin.hardkernel from byte 0 (the board rule keeps
// the card's partition table), u-boot.bin at sector 97 (the script's
// u-boot.bin write covers anything of bl1 past it).
func hardkernelPair(bl1, uboot []byte) []byte {
	const at = amlimage.SDPrefix + amlimage.FIPAt // sector 97
	out := make([]byte, at, at+len(uboot))
	copy(out, bl1)
	return append(out, uboot...)
}

func prepareArmada8K(f *Format, files []File, infos []Info) ([]byte, error) {
	want := f.Want
	if len(files) != 1 {
		return nil, fmt.Errorf("%d bootloader files given; wanted %s", len(files), want)
	}
	if infos[0].Kind != Armada8K {
		return nil, refuse(files[0], infos[0], want)
	}
	return files[0].Data, nil
}
