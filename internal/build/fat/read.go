package fat

import (
	"encoding/binary"
	"fmt"
	"io"
	"path"
	"strings"
	"time"
	"unicode/utf16"
)

// FS is a FAT32 volume opened for reading (for `mkimage inspect` and
// tests). It trusts nothing on disk: chains are bounded and checked.
type FS struct {
	r   io.ReaderAt
	g   geometry
	fat []uint32
	// dataStart and rootCluster come from the boot sector as found.
	dataStart   int64
	rootCluster uint32
	VolumeID    uint32 `json:"volume_id"`
	Label       string `json:"label"`
}

// Entry is one file or directory found on the volume.
type Entry struct {
	Path  string    `json:"path"` // slash-separated, no leading slash
	Short string    `json:"short_name"`
	Dir   bool      `json:"dir,omitempty"`
	Size  int64     `json:"size"`
	Mtime time.Time `json:"mtime"`

	first uint32
}

// Open reads the boot sector and the first FAT of the FAT32 volume at
// offset 0 of r, which is size bytes long.
func Open(r io.ReaderAt, size int64) (*FS, error) {
	bs := make([]byte, sectorSize)
	if _, err := r.ReadAt(bs, 0); err != nil {
		return nil, fmt.Errorf("reading FAT boot sector: %w", err)
	}
	le := binary.LittleEndian
	if bs[510] != 0x55 || bs[511] != 0xaa {
		return nil, fmt.Errorf("no FAT boot sector (signature %02x%02x, want 55aa)", bs[510], bs[511])
	}
	if string(bs[82:90]) != "FAT32   " || le.Uint16(bs[22:]) != 0 {
		return nil, fmt.Errorf("not a FAT32 volume (type %q)", string(bs[82:90]))
	}
	if bps := le.Uint16(bs[11:]); bps != sectorSize {
		return nil, fmt.Errorf("FAT32 with %d-byte sectors is not supported", bps)
	}
	spc := uint32(bs[13])
	res := uint32(le.Uint16(bs[14:]))
	nfat := uint32(bs[16])
	total := le.Uint32(bs[32:])
	fatSec := le.Uint32(bs[36:])
	if spc == 0 || spc&(spc-1) != 0 || nfat == 0 || fatSec == 0 || int64(total)*sectorSize > size {
		return nil, fmt.Errorf("FAT32 boot sector is inconsistent (sectors/cluster %d, FATs %d, FAT sectors %d, total sectors %d for %d bytes)", spc, nfat, fatSec, total, size)
	}
	// In 64 bits: nfat*fatSec can wrap a uint32 and put the data area
	// anywhere.
	dataStart := uint64(res) + uint64(nfat)*uint64(fatSec)
	if dataStart >= uint64(total) {
		return nil, fmt.Errorf("FAT32 boot sector: data area starts at sector %d, beyond the volume's %d sectors", dataStart, total)
	}
	clusters := (total - uint32(dataStart)) / spc
	g := geometry{totalSectors: total, sectorsPerClus: spc, fatSectors: fatSec, clusters: clusters}
	fs := &FS{r: r, g: g, VolumeID: le.Uint32(bs[67:]), Label: strings.TrimRight(string(bs[71:82]), " ")}
	entries := min(uint64(clusters)+2, uint64(fatSec)*sectorSize/4)
	// Read the FAT in chunks: the size passed in may be a partition
	// table's claim, so allocate only for bytes the reader really has.
	fs.fat = make([]uint32, 0, min(entries, fatChunk/4))
	raw := make([]byte, fatChunk)
	for off := uint64(0); off < entries*4; off += fatChunk {
		b := raw[:min(fatChunk, entries*4-off)]
		if _, err := r.ReadAt(b, int64(res)*sectorSize+int64(off)); err != nil {
			return nil, fmt.Errorf("reading the FAT (%d entries from sector %d): %w", entries, res, err)
		}
		for i := 0; i+4 <= len(b); i += 4 {
			fs.fat = append(fs.fat, le.Uint32(b[i:])&0x0fffffff)
		}
	}
	fs.dataStart = int64(dataStart) * sectorSize
	fs.rootCluster = le.Uint32(bs[44:])
	return fs, nil
}

// fatChunk is how much of the FAT Open reads at a time.
const fatChunk = 1 << 20

// chain returns the clusters of the chain starting at first: for a file
// (size >= 0) just enough to hold size bytes, for a directory (size < 0)
// all of them, which must hold at most -size bytes. A chain that comes
// back to a cluster it has passed is an error, not a longer file.
func (fs *FS) chain(first uint32, size int64) ([]uint32, error) {
	var out []uint32
	seen := map[uint32]bool{}
	cb := fs.g.clusterBytes()
	for c := first; ; {
		if c < 2 || int(c) >= len(fs.fat) {
			return nil, fmt.Errorf("cluster chain from %d reaches invalid cluster %d", first, c)
		}
		if seen[c] {
			return nil, fmt.Errorf("cluster chain from %d loops back to cluster %d after %d clusters", first, c, len(out))
		}
		seen[c] = true
		out = append(out, c)
		n := int64(len(out)) * cb
		if size >= 0 && n >= size {
			return out, nil
		}
		if size < 0 && n > -size {
			return nil, fmt.Errorf("cluster chain from %d holds more than %d bytes, the most a directory can", first, -size)
		}
		next := fs.fat[c]
		if next >= 0x0ffffff8 {
			return out, nil
		}
		c = next
	}
}

// read returns the bytes of a file of size bytes, or of a whole directory
// of at most -size bytes (size < 0), starting at cluster first.
func (fs *FS) read(first uint32, size int64) ([]byte, error) {
	if size == 0 {
		return nil, nil
	}
	cl, err := fs.chain(first, size)
	if err != nil {
		return nil, err
	}
	cb := fs.g.clusterBytes()
	if size < 0 {
		size = int64(len(cl)) * cb
	}
	if int64(len(cl))*cb < size {
		return nil, fmt.Errorf("cluster chain from %d holds %d bytes, want %d", first, int64(len(cl))*cb, size)
	}
	b := make([]byte, size)
	for i := 0; i < len(cl); {
		// Read runs of consecutive clusters at once.
		j := i + 1
		for j < len(cl) && cl[j] == cl[j-1]+1 {
			j++
		}
		lo, hi := int64(i)*cb, min(int64(j)*cb, size)
		if _, err := fs.r.ReadAt(b[lo:hi], fs.dataStart+int64(cl[i]-2)*cb); err != nil {
			return nil, fmt.Errorf("reading clusters %d..%d: %w", cl[i], cl[j-1], err)
		}
		i = j
	}
	return b, nil
}

// readDir parses the entries of the directory starting at cluster first.
func (fs *FS) readDir(dir string, first uint32) ([]Entry, error) {
	// The FAT spec allows 65536 entries per directory: reading no more
	// keeps a long or hostile chain from filling memory.
	b, err := fs.read(first, -maxDirBytes)
	if err != nil {
		return nil, fmt.Errorf("directory /%s: %w", dir, err)
	}
	var out []Entry
	var lfn []uint16
	var lfnSum byte
	lfnOK := false
	for i := 0; i+32 <= len(b); i += 32 {
		e := b[i : i+32]
		if e[0] == 0 {
			break
		}
		if e[0] == 0xe5 {
			lfnOK = false
			continue
		}
		if e[11]&0x3f == 0x0f {
			ord := int(e[0] & 0x1f)
			if e[0]&0x40 != 0 {
				lfn, lfnSum, lfnOK = make([]uint16, 13*ord), e[13], true
			}
			if !lfnOK || ord == 0 || 13*ord > len(lfn) || e[13] != lfnSum {
				lfnOK = false
				continue
			}
			for k, off := range lfnOffsets {
				lfn[13*(ord-1)+k] = binary.LittleEndian.Uint16(e[off:])
			}
			continue
		}
		if e[11]&attrVolumeID != 0 {
			lfnOK = false
			continue
		}
		var sn [11]byte
		copy(sn[:], e[:11])
		name := shortString(sn, e[12])
		if lfnOK && lfnChecksum(sn) == lfnSum {
			n := len(lfn)
			for k, u := range lfn {
				if u == 0 {
					n = k
					break
				}
			}
			name = string(utf16.Decode(lfn[:n]))
		}
		lfnOK = false
		if name == "." || name == ".." {
			continue
		}
		le := binary.LittleEndian
		out = append(out, Entry{
			Path:  path.Join(dir, name),
			Short: shortString(sn, 0),
			Dir:   e[11]&attrDir != 0,
			Size:  int64(le.Uint32(e[28:])),
			Mtime: fromFATTime(le.Uint16(e[24:]), le.Uint16(e[22:])),
			first: uint32(le.Uint16(e[20:]))<<16 | uint32(le.Uint16(e[26:])),
		})
		if out[len(out)-1].Dir {
			out[len(out)-1].Size = 0
		}
	}
	return out, nil
}

// shortString renders an 8.3 name; flags are the NT case bits (0x08
// lower-case base, 0x10 lower-case extension) other writers use.
func shortString(sn [11]byte, flags byte) string {
	base := strings.TrimRight(string(sn[:8]), " ")
	ext := strings.TrimRight(string(sn[8:]), " ")
	if sn[0] == 0x05 {
		base = "\xe5" + base[1:]
	}
	if flags&0x08 != 0 {
		base = strings.ToLower(base)
	}
	if flags&0x10 != 0 {
		ext = strings.ToLower(ext)
	}
	if ext == "" {
		return base
	}
	return base + "." + ext
}

func fromFATTime(d, t uint16) time.Time {
	return time.Date(1980+int(d>>9), time.Month(d>>5&0x0f), int(d&0x1f), int(t>>11), int(t>>5&0x3f), int(t&0x1f)*2, 0, time.UTC)
}

// Walk calls fn for every file and directory, parents before children, in
// on-disk order.
func (fs *FS) Walk(fn func(Entry) error) error {
	seen := map[uint32]bool{}
	var walk func(dir string, first uint32) error
	walk = func(dir string, first uint32) error {
		if seen[first] {
			return fmt.Errorf("directory /%s loops back to cluster %d", dir, first)
		}
		seen[first] = true
		ents, err := fs.readDir(dir, first)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := fn(e); err != nil {
				return err
			}
			if e.Dir {
				if err := walk(e.Path, e.first); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk("", fs.rootCluster)
}

// List returns every entry of the volume.
func (fs *FS) List() ([]Entry, error) {
	var out []Entry
	err := fs.Walk(func(e Entry) error { out = append(out, e); return nil })
	return out, err
}

// ReadFile returns the content of the file at p (slash-separated, leading
// slash optional). Names match case-insensitively, as on FAT.
func (fs *FS) ReadFile(p string) ([]byte, error) {
	e, err := fs.file(p)
	if err != nil {
		return nil, err
	}
	b, err := fs.read(e.first, e.Size)
	if err != nil {
		return nil, fmt.Errorf("/%s: %w", e.Path, err)
	}
	return b, nil
}

// Extents returns the byte ranges of the volume that hold the file at p,
// whole clusters in file order: what a rewrite of the file in place may
// change (tests compare volume bytes before and after U-Boot's fatwrite).
func (fs *FS) Extents(p string) ([]Range, error) {
	e, err := fs.file(p)
	if err != nil {
		return nil, err
	}
	if e.Size == 0 {
		return nil, nil
	}
	cl, err := fs.chain(e.first, e.Size)
	if err != nil {
		return nil, fmt.Errorf("/%s: %w", e.Path, err)
	}
	cb := fs.g.clusterBytes()
	var out ranges
	for _, c := range cl {
		out.add(fs.dataStart+int64(c-2)*cb, cb)
	}
	return out.merged(), nil
}

// file finds the regular file at p.
func (fs *FS) file(p string) (Entry, error) {
	p = strings.Trim(p, "/")
	cur := fs.rootCluster
	parts := strings.Split(p, "/")
	dir := ""
	for i, part := range parts {
		ents, err := fs.readDir(dir, cur)
		if err != nil {
			return Entry{}, err
		}
		var found *Entry
		for k := range ents {
			if strings.EqualFold(path.Base(ents[k].Path), part) || strings.EqualFold(ents[k].Short, part) {
				found = &ents[k]
				break
			}
		}
		if found == nil {
			return Entry{}, fmt.Errorf("/%s: not found on the FAT volume", path.Join(parts[:i+1]...))
		}
		if i == len(parts)-1 {
			if found.Dir {
				return Entry{}, fmt.Errorf("/%s is a directory", p)
			}
			return *found, nil
		}
		if !found.Dir {
			return Entry{}, fmt.Errorf("/%s is not a directory", found.Path)
		}
		dir, cur = found.Path, found.first
	}
	return Entry{}, fmt.Errorf("/%s: not found", p)
}
