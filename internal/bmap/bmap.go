// Package bmap reads and writes block maps in bmap-tools' format 2.0: the
// list of blocks of an image that hold data, with a sha256 per range, so a
// flasher writes only those blocks and can check what it wrote.
package bmap

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"hash"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/mkimage/mkimage/internal/atomicfile"
)

// BlockSize is the block size of the maps we write (bmaptool's default).
const BlockSize = 4096

// Range is an inclusive run of mapped blocks and the checksum of its bytes
// (the last block of an image may be partial; only its bytes count).
type Range struct {
	First, Last int64
	Sum         string // lower-case hex
}

// Map is a parsed or generated block map.
type Map struct {
	ImageSize    int64
	BlockSize    int64
	ChecksumType string // "sha256" for the maps we write
	Ranges       []Range
}

// BlocksCount is the number of blocks the image spans.
func (m *Map) BlocksCount() int64 { return (m.ImageSize + m.BlockSize - 1) / m.BlockSize }

// MappedBlocks is the number of blocks in all ranges.
func (m *Map) MappedBlocks() int64 {
	var n int64
	for _, r := range m.Ranges {
		n += r.Last - r.First + 1
	}
	return n
}

// Bytes returns the byte span [off, end) of r, clipped to the image.
func (m *Map) Bytes(r Range) (off, end int64) {
	off = r.First * m.BlockSize
	end = min((r.Last+1)*m.BlockSize, m.ImageSize)
	return off, end
}

// MappedBytes is the number of image bytes in all ranges.
func (m *Map) MappedBytes() int64 {
	var n int64
	for _, r := range m.Ranges {
		off, end := m.Bytes(r)
		n += end - off
	}
	return n
}

// NewHash returns a hash for the map's checksum type.
func (m *Map) NewHash() hash.Hash { h, _ := newHash(m.ChecksumType); return h }

func newHash(kind string) (hash.Hash, error) {
	switch kind {
	case "sha256":
		return sha256.New(), nil
	case "sha512":
		return sha512.New(), nil
	}
	return nil, fmt.Errorf("checksum type %q is not supported (want sha256 or sha512)", kind)
}

// Marshal renders m as a bmap 2.0 file with its BmapFileChecksum filled in.
func (m *Map) Marshal() ([]byte, error) {
	if m.ChecksumType == "" {
		m.ChecksumType = "sha256"
	}
	h, err := newHash(m.ChecksumType)
	if err != nil {
		return nil, err
	}
	zeros := strings.Repeat("0", 2*h.Size())
	var b bytes.Buffer
	fmt.Fprintf(&b, "<?xml version=\"1.0\" ?>\n")
	fmt.Fprintf(&b, "<!-- Block map written by mkimage; see bmap-tools for the format. -->\n")
	fmt.Fprintf(&b, "<bmap version=\"2.0\">\n")
	fmt.Fprintf(&b, "    <ImageSize> %d </ImageSize>\n", m.ImageSize)
	fmt.Fprintf(&b, "    <BlockSize> %d </BlockSize>\n", m.BlockSize)
	fmt.Fprintf(&b, "    <BlocksCount> %d </BlocksCount>\n", m.BlocksCount())
	fmt.Fprintf(&b, "    <MappedBlocksCount> %d </MappedBlocksCount>\n", m.MappedBlocks())
	fmt.Fprintf(&b, "    <ChecksumType> %s </ChecksumType>\n", m.ChecksumType)
	// bmap-tools hashes the file with this field's value as ASCII zeros.
	fmt.Fprintf(&b, "    <BmapFileChecksum> ")
	sumAt := b.Len()
	fmt.Fprintf(&b, "%s </BmapFileChecksum>\n", zeros)
	fmt.Fprintf(&b, "    <BlockMap>\n")
	for _, r := range m.Ranges {
		if r.First == r.Last {
			fmt.Fprintf(&b, "        <Range chksum=\"%s\"> %d </Range>\n", r.Sum, r.First)
		} else {
			fmt.Fprintf(&b, "        <Range chksum=\"%s\"> %d-%d </Range>\n", r.Sum, r.First, r.Last)
		}
	}
	fmt.Fprintf(&b, "    </BlockMap>\n</bmap>\n")
	out := b.Bytes()
	h.Write(out)
	copy(out[sumAt:], hex.EncodeToString(h.Sum(nil)))
	return out, nil
}

// WriteFile writes m to path atomically.
func (m *Map) WriteFile(path string) error {
	data, err := m.Marshal()
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, data, 0o644)
}

const (
	maxBlockSize = 1 << 30
	maxImageSize = 1 << 60
)

type xmlMap struct {
	XMLName      xml.Name `xml:"bmap"`
	Version      string   `xml:"version,attr"`
	ImageSize    string   `xml:"ImageSize"`
	BlockSize    string   `xml:"BlockSize"`
	BlocksCount  string   `xml:"BlocksCount"`
	Mapped       string   `xml:"MappedBlocksCount"`
	ChecksumType string   `xml:"ChecksumType"`
	FileSum      string   `xml:"BmapFileChecksum"`
	Ranges       []struct {
		Sum  string `xml:"chksum,attr"`
		Text string `xml:",chardata"`
	} `xml:"BlockMap>Range"`
}

// Parse reads a bmap file of format 2.x (or the identical 1.4), checks its
// BmapFileChecksum and the ranges against the image size.
func Parse(data []byte) (*Map, error) {
	var x xmlMap
	if err := xml.Unmarshal(data, &x); err != nil {
		return nil, fmt.Errorf("not a bmap file: %w", err)
	}
	if x.Version != "2.0" && x.Version != "1.4" && !strings.HasPrefix(x.Version, "2.") {
		return nil, fmt.Errorf("bmap version %q is not supported (want 2.x); regenerate it with bmaptool create", x.Version)
	}
	m := &Map{ChecksumType: strings.TrimSpace(x.ChecksumType)}
	h, err := newHash(m.ChecksumType)
	if err != nil {
		return nil, err
	}
	num := func(name, s string) (int64, error) {
		v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil || v < 0 {
			return 0, fmt.Errorf("bad %s %q", name, strings.TrimSpace(s))
		}
		return v, nil
	}
	if m.ImageSize, err = num("ImageSize", x.ImageSize); err != nil {
		return nil, err
	}
	if m.BlockSize, err = num("BlockSize", x.BlockSize); err != nil {
		return nil, err
	}
	if m.BlockSize == 0 || m.BlockSize%512 != 0 || m.BlockSize > maxBlockSize {
		return nil, fmt.Errorf("bad BlockSize %d (want a multiple of 512, at most %d)", m.BlockSize, maxBlockSize)
	}
	// Bounds keep block and byte arithmetic inside int64.
	if m.ImageSize > maxImageSize {
		return nil, fmt.Errorf("bad ImageSize %d (more than %d bytes)", m.ImageSize, int64(maxImageSize))
	}
	sum := strings.TrimSpace(x.FileSum)
	if len(sum) != 2*h.Size() {
		return nil, fmt.Errorf("bad BmapFileChecksum %q", sum)
	}
	// The sum is taken over the file with this field's text zeroed, so
	// it must appear as it is (not as XML character references).
	i := bytes.Index(data, []byte(sum))
	if i < 0 {
		return nil, fmt.Errorf("BmapFileChecksum %q is not written out as plain text in the file", sum)
	}
	zeroed := bytes.Clone(data)
	copy(zeroed[i:], strings.Repeat("0", len(sum)))
	h.Write(zeroed)
	if got := hex.EncodeToString(h.Sum(nil)); got != strings.ToLower(sum) {
		return nil, fmt.Errorf("BmapFileChecksum mismatch (file says %s, content gives %s): the bmap file is damaged or was edited", sum, got)
	}
	blocks := m.BlocksCount()
	next := int64(0)
	for _, xr := range x.Ranges {
		var r Range
		t := strings.TrimSpace(xr.Text)
		first, last, isRange := strings.Cut(t, "-")
		if r.First, err = num("Range", first); err != nil {
			return nil, err
		}
		r.Last = r.First
		if isRange {
			if r.Last, err = num("Range", last); err != nil {
				return nil, err
			}
		}
		if r.Last < r.First || r.First < next || r.Last >= blocks {
			return nil, fmt.Errorf("bad Range %q: ranges must be ascending, disjoint and inside the %d blocks of the image", t, blocks)
		}
		next = r.Last + 1
		r.Sum = strings.ToLower(xr.Sum)
		if len(r.Sum) != 2*h.Size() {
			return nil, fmt.Errorf("Range %q has no valid chksum; regenerate the bmap with checksums", t)
		}
		m.Ranges = append(m.Ranges, r)
	}
	return m, nil
}

// ReadFile parses the bmap file at path.
func ReadFile(path string) (*Map, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// hashRange hashes the bytes of r read from img.
func (m *Map) hashRange(img io.ReaderAt, r Range, buf []byte) (string, error) {
	h := m.NewHash()
	off, end := m.Bytes(r)
	n, err := io.CopyBuffer(h, io.NewSectionReader(img, off, end-off), buf)
	if err != nil {
		return "", err
	}
	if n != end-off {
		return "", fmt.Errorf("image ends at %d, inside blocks %d-%d", off+n, r.First, r.Last)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
