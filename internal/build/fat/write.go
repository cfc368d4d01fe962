// Package fat writes and reads the FAT32 boot partition.
//
// The writer is write-once: it lays out a whole fstree.Tree in one pass
// (every directory and file in contiguous clusters, in the tree's sorted
// order), builds the FAT in memory and writes each piece with one WriteAt.
// go-diskfs v1.9.4's fat32 was measured instead (bench/fat_test.go): it
// allocates and writes file data per cluster, rewrites both FATs and the
// parent directory on every Write call, takes entry times from
// time.Now() or SOURCE_DATE_EPOCH rather than each file's mtime, and can
// not report which byte ranges it wrote. Its reader serves as a
// cross-check in tests.
package fat

import (
	"encoding/binary"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/fstree"
)

const (
	// DefaultSize is the boot partition size used when Options.Size is 0.
	DefaultSize = 256 << 20
	// DefaultLabel is the volume label used when Options.Label is "".
	DefaultLabel = "BOOT"

	sectorSize      = 512
	reservedSectors = 32
	fsInfoSector    = 1
	backupBoot      = 6
	// minClusters is where FAT32 starts: with fewer clusters, tools take
	// the volume for FAT16 whatever the boot sector says.
	minClusters = 65525
	maxDirBytes = 65536 * 32 // FAT spec: at most 65536 entries per directory

	attrReadOnly = 0x01
	attrVolumeID = 0x08
	attrDir      = 0x10
	attrArchive  = 0x20
	eoc          = 0x0fffffff
)

// Options describe the filesystem to write.
type Options struct {
	// Size is the partition size in bytes, a multiple of 512
	// (0: DefaultSize).
	Size int64
	// Label is the volume label, at most 11 upper-case 8.3 characters
	// ("": DefaultLabel).
	Label string
	// VolumeID is the volume serial number; derive it from the build's
	// inputs so the same inputs give the same bytes.
	VolumeID uint32
	// HiddenSectors is the partition's first sector on its disk (BPB field
	// some firmware reads); 0 for a bare filesystem image.
	HiddenSectors uint32
	// Progress, if set, is called as Write goes with the bytes written
	// so far and the bytes it writes in all (the first call has done 0).
	Progress func(done, total int64)
}

// Range is a byte range of the partition that Write wrote. Everything
// else is left untouched and must read as zeros (a new or truncated image
// file), which is what lets a .bmap skip it.
type Range struct {
	Offset int64 `json:"offset"`
	Length int64 `json:"length"`
}

// geometry is the on-disk layout of the volume.
type geometry struct {
	totalSectors   uint32
	sectorsPerClus uint32
	fatSectors     uint32
	clusters       uint32 // data clusters, numbered 2..clusters+1
}

func (g geometry) clusterBytes() int64 { return int64(g.sectorsPerClus) * sectorSize }
func (g geometry) fatOffset(i int) int64 {
	return int64(reservedSectors+uint32(i)*g.fatSectors) * sectorSize
}
func (g geometry) dataOffset() int64 { return g.fatOffset(2) }
func (g geometry) clusterOffset(c uint32) int64 {
	return g.dataOffset() + int64(c-2)*g.clusterBytes()
}

// planGeometry picks the cluster size (the usual table, 4 KiB up to 8 GiB,
// halved until the volume has FAT32's minimum cluster count) and the FAT
// size. The data area starts on a cluster boundary.
func planGeometry(size int64) (geometry, error) {
	var g geometry
	if size <= 0 || size%sectorSize != 0 {
		return g, fmt.Errorf("FAT32 size %d bytes is not a positive multiple of %d", size, sectorSize)
	}
	if size/sectorSize > 0xffffffff {
		return g, fmt.Errorf("FAT32 size %d bytes exceeds 2^32 sectors", size)
	}
	total := uint32(size / sectorSize)
	capBytes := int64(4096)
	switch {
	case size > 32<<30:
		capBytes = 32768
	case size > 16<<30:
		capBytes = 16384
	case size > 8<<30:
		capBytes = 8192
	}
	for cb := capBytes; cb >= sectorSize; cb /= 2 {
		spc := uint32(cb / sectorSize)
		fat := uint32(1)
		var clusters uint32
		for {
			used := uint64(reservedSectors) + 2*uint64(fat)
			if used >= uint64(total) {
				clusters = 0
				break
			}
			clusters = (total - uint32(used)) / spc
			need := uint32((uint64(clusters+2)*4 + sectorSize - 1) / sectorSize)
			if need <= fat && (reservedSectors+2*fat)%spc == 0 {
				break
			}
			fat = max(fat+1, need)
		}
		if clusters >= minClusters {
			return geometry{totalSectors: total, sectorsPerClus: spc, fatSectors: fat, clusters: clusters}, nil
		}
	}
	return g, fmt.Errorf("FAT32 partition of %d bytes is too small: FAT32 needs at least %d clusters of 512 bytes (about %d MiB)", size, minClusters, (minClusters*512)>>20+2)
}

// obj is one directory or file laid out on the volume.
type obj struct {
	path     string
	ino      *fstree.Inode
	dir      bool
	bytes    int64 // file size, or directory entry bytes
	first    uint32
	nclus    uint32
	parent   *obj
	children []child
}

type child struct {
	name  string
	short [11]byte
	lfn   bool
	o     *obj
}

// Write lays t out as a FAT32 volume of opt.Size bytes at offset 0 of w
// and returns the byte ranges it wrote, sorted and merged. Only directories
// and regular files can be stored; anything else is an error naming its
// path. A hard-linked file is stored once per name. Times come from each
// inode's Mtime, taken as UTC (FAT stores local time without a zone).
func Write(w io.WriterAt, t *fstree.Tree, opt Options) ([]Range, error) {
	if opt.Size == 0 {
		opt.Size = DefaultSize
	}
	if opt.Label == "" {
		opt.Label = DefaultLabel
	}
	label, err := volumeLabel(opt.Label)
	if err != nil {
		return nil, err
	}
	g, err := planGeometry(opt.Size)
	if err != nil {
		return nil, err
	}
	if t == nil || t.Root == nil || !t.Root.IsDir() {
		return nil, fmt.Errorf("FAT: tree root is not a directory")
	}
	root, order, err := layout(t.Root)
	if err != nil {
		return nil, err
	}

	// Allocate clusters in walk order: each object contiguous.
	next := uint32(2)
	var need uint64
	for _, o := range order {
		n := uint64((o.bytes + g.clusterBytes() - 1) / g.clusterBytes())
		if o.dir && n == 0 {
			n = 1
		}
		need += n
		if need > uint64(g.clusters) {
			break
		}
		o.nclus = uint32(n)
		if n > 0 {
			o.first = next
			next += uint32(n)
		}
	}
	if need > uint64(g.clusters) {
		var total uint64
		var data int64
		for _, o := range order {
			n := uint64((o.bytes + g.clusterBytes() - 1) / g.clusterBytes())
			if o.dir && n == 0 {
				n = 1
			}
			total += n
			if !o.dir {
				data += o.bytes
			}
		}
		return nil, fmt.Errorf("boot files (%d bytes of data) need %d bytes on FAT32 (%d clusters of %d bytes) but the %d-byte partition holds %d bytes (%d clusters); make the boot partition larger",
			data, total*uint64(g.clusterBytes()), total, g.clusterBytes(), opt.Size, uint64(g.clusters)*uint64(g.clusterBytes()), g.clusters)
	}
	used := next - 2

	var out ranges
	put := func(b []byte, off int64) error {
		if len(b) == 0 {
			return nil
		}
		if _, err := w.WriteAt(b, off); err != nil {
			return fmt.Errorf("writing FAT32 at byte %d: %w", off, err)
		}
		out.add(off, int64(len(b)))
		return nil
	}

	// Both FATs: only the entries in use (the rest is zero = free).
	fat := make([]byte, (int64(next)*4+sectorSize-1)/sectorSize*sectorSize)
	binary.LittleEndian.PutUint32(fat[0:], 0x0ffffff8)
	binary.LittleEndian.PutUint32(fat[4:], eoc)
	for _, o := range order {
		for i := uint32(0); i < o.nclus; i++ {
			v := uint32(eoc)
			if i+1 < o.nclus {
				v = o.first + i + 1
			}
			binary.LittleEndian.PutUint32(fat[4*(o.first+i):], v)
		}
	}
	if opt.Progress != nil {
		// The four sectors below, both FATs, the directories and the
		// files' bytes.
		total := 4*sectorSize + 2*int64(len(fat))
		for _, o := range order {
			if o.dir {
				total += int64(o.nclus) * g.clusterBytes()
			} else {
				total += o.bytes
			}
		}
		w = &counter{w: w, total: total, progress: opt.Progress}
		opt.Progress(0, total)
	}

	// Boot sector, FSInfo and their backups.
	bs := bootSector(g, opt, label)
	fsi := fsInfo(g.clusters-used, next, g.clusters)
	for _, s := range []struct {
		b   []byte
		sec int64
	}{{bs, 0}, {fsi, fsInfoSector}, {bs, backupBoot}, {fsi, backupBoot + fsInfoSector}} {
		if err := put(s.b, s.sec*sectorSize); err != nil {
			return nil, err
		}
	}

	for i := 0; i < 2; i++ {
		if err := put(fat, g.fatOffset(i)); err != nil {
			return nil, err
		}
	}

	// Directories and files in cluster order.
	buf := make([]byte, 1<<20)
	for _, o := range order {
		if o.dir {
			if err := put(dirBytes(o, o == root, label, g), g.clusterOffset(o.first)); err != nil {
				return nil, err
			}
			continue
		}
		if o.bytes == 0 {
			continue
		}
		if err := writeFile(w, o, g.clusterOffset(o.first), buf); err != nil {
			return nil, err
		}
		out.add(g.clusterOffset(o.first), o.bytes)
	}
	return out.merged(), nil
}

// counter passes writes on and reports the bytes written.
type counter struct {
	w           io.WriterAt
	done, total int64
	progress    func(done, total int64)
}

func (c *counter) WriteAt(p []byte, off int64) (int, error) {
	n, err := c.w.WriteAt(p, off)
	c.done += int64(n)
	c.progress(c.done, c.total)
	return n, err
}

func writeFile(w io.WriterAt, o *obj, off int64, buf []byte) error {
	if b, ok := o.ino.Content.(fstree.Bytes); ok {
		if _, err := w.WriteAt(b, off); err != nil {
			return fmt.Errorf("writing /%s: %w", o.path, err)
		}
		return nil
	}
	r, err := o.ino.Content.Open()
	if err != nil {
		return fmt.Errorf("/%s: %w", o.path, err)
	}
	defer r.Close()
	n, err := io.CopyBuffer(io.NewOffsetWriter(w, off), io.LimitReader(r, o.bytes), buf)
	if err != nil {
		return fmt.Errorf("writing /%s: %w", o.path, err)
	}
	if n != o.bytes {
		return fmt.Errorf("/%s: content gave %d bytes, its size is %d", o.path, n, o.bytes)
	}
	if m, _ := r.Read(buf[:1]); m != 0 {
		return fmt.Errorf("/%s: content is longer than its size %d", o.path, o.bytes)
	}
	return nil
}

// layout checks the tree, gives every name its short name and returns the
// objects in the order their clusters are allocated (the tree's walk
// order: parents before children, names sorted).
func layout(rootIno *fstree.Inode) (*obj, []*obj, error) {
	root := &obj{ino: rootIno, dir: true}
	order := []*obj{}
	var visit func(o *obj) error
	visit = func(o *obj) error {
		order = append(order, o)
		if !o.dir {
			return nil
		}
		names := o.ino.Names()
		folded := map[string]string{}
		nm := newNamer()
		o.children = make([]child, len(names))
		// Exact 8.3 names claim theirs first so generated ones avoid them.
		for i, name := range names {
			p := path.Join(o.path, name)
			if err := checkLongName(name); err != nil {
				return fmt.Errorf("FAT: /%s: %w", p, err)
			}
			up := strings.ToUpper(name)
			if prev, ok := folded[up]; ok {
				return fmt.Errorf("FAT: /%s and /%s differ only in case, which FAT cannot tell apart", path.Join(o.path, prev), p)
			}
			folded[up] = name
			o.children[i].name = name
			if sn, ok := exact83(name); ok {
				o.children[i].short = sn
				nm.taken[sn] = true
			}
		}
		entries := int64(1) // root: volume label; others: "." and ".."
		if o != root {
			entries = 2
		}
		for i := range o.children {
			c := &o.children[i]
			if _, ok := exact83(c.name); !ok {
				sn, err := nm.generate(c.name)
				if err != nil {
					return fmt.Errorf("FAT: /%s: %w", path.Join(o.path, c.name), err)
				}
				c.short, c.lfn = sn, true
				entries += int64(lfnSlots(c.name))
			}
			entries++
		}
		o.bytes = entries * 32
		if o.bytes > maxDirBytes {
			return fmt.Errorf("FAT: directory /%s needs %d entries; FAT allows at most %d", o.path, entries, maxDirBytes/32)
		}
		for i := range o.children {
			c := &o.children[i]
			ino := o.ino.Children[c.name]
			p := path.Join(o.path, c.name)
			switch ino.Type() {
			case fstree.ModeDir:
				c.o = &obj{path: p, ino: ino, dir: true, parent: o}
			case fstree.ModeRegular:
				if ino.Size() > 0xffffffff {
					return fmt.Errorf("FAT: /%s is %d bytes; FAT32 files hold at most 4 GiB - 1", p, ino.Size())
				}
				c.o = &obj{path: p, ino: ino, bytes: ino.Size(), parent: o}
			default:
				return fmt.Errorf("FAT: /%s is a %s; a FAT partition holds only directories and regular files", p, fstree.TypeName(ino.Mode))
			}
			if err := visit(c.o); err != nil {
				return err
			}
		}
		return nil
	}
	if err := visit(root); err != nil {
		return nil, nil, err
	}
	return root, order, nil
}

// dirBytes renders a directory's entries padded to whole clusters (the
// zero entry after the last one ends the listing).
func dirBytes(o *obj, isRoot bool, label [11]byte, g geometry) []byte {
	b := make([]byte, int64(o.nclus)*g.clusterBytes())
	at := 0
	add := func(e []byte) { at += copy(b[at:], e) }
	if isRoot {
		add(shortEntry(label, attrVolumeID, 0, 0, o.ino.Mtime))
	} else {
		parent := uint32(0) // ".." of a top-level directory points at cluster 0
		if o.parent.parent != nil {
			parent = o.parent.first
		}
		add(shortEntry(pad83(".", ""), attrDir, o.first, 0, o.ino.Mtime))
		add(shortEntry(pad83("..", ""), attrDir, parent, 0, o.parent.ino.Mtime))
	}
	for _, c := range o.children {
		if c.lfn {
			add(lfnEntries(c.name, c.short))
		}
		attr := byte(attrArchive)
		if c.o.dir {
			attr = attrDir
		}
		if c.o.ino.Mode&0o222 == 0 {
			attr |= attrReadOnly
		}
		size := uint32(0)
		if !c.o.dir {
			size = uint32(c.o.bytes)
		}
		add(shortEntry(c.short, attr, c.o.first, size, c.o.ino.Mtime))
	}
	return b
}

func shortEntry(sn [11]byte, attr byte, cluster, size uint32, mtime time.Time) []byte {
	e := make([]byte, 32)
	copy(e, sn[:])
	e[11] = attr
	d, tm, tenth := fatTime(mtime)
	le := binary.LittleEndian
	e[13] = tenth
	le.PutUint16(e[14:], tm) // creation
	le.PutUint16(e[16:], d)
	le.PutUint16(e[18:], d) // last access
	le.PutUint16(e[20:], uint16(cluster>>16))
	le.PutUint16(e[22:], tm) // modification
	le.PutUint16(e[24:], d)
	le.PutUint16(e[26:], uint16(cluster))
	le.PutUint32(e[28:], size)
	return e
}

var (
	fatEpoch = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	fatEnd   = time.Date(2107, 12, 31, 23, 59, 58, 0, time.UTC)
)

// fatTime encodes t (as UTC, clamped to FAT's 1980..2107 range) as a FAT
// date, time (2-second units) and creation tenths.
func fatTime(t time.Time) (date, tm uint16, tenth byte) {
	t = t.UTC()
	if t.Before(fatEpoch) {
		t = fatEpoch
	}
	if t.After(fatEnd) {
		t = fatEnd
	}
	date = uint16(t.Year()-1980)<<9 | uint16(t.Month())<<5 | uint16(t.Day())
	tm = uint16(t.Hour())<<11 | uint16(t.Minute())<<5 | uint16(t.Second()/2)
	tenth = byte(t.Second()%2*100 + t.Nanosecond()/10_000_000)
	return
}

func volumeLabel(s string) ([11]byte, error) {
	var l [11]byte
	if len(s) > 11 {
		return l, fmt.Errorf("FAT volume label %q is longer than 11 characters", s)
	}
	for _, c := range s {
		if !(validShort(c) || c == ' ') {
			return l, fmt.Errorf("FAT volume label %q: %q is not allowed (use A-Z, 0-9, space and !#$%%&'()-@^_`{}~)", s, c)
		}
	}
	copy(l[:], s+"           ")
	return l, nil
}

func bootSector(g geometry, opt Options, label [11]byte) []byte {
	b := make([]byte, sectorSize)
	le := binary.LittleEndian
	copy(b[0:], []byte{0xeb, 0x58, 0x90})
	copy(b[3:], "mkimage ")
	le.PutUint16(b[11:], sectorSize)
	b[13] = byte(g.sectorsPerClus)
	le.PutUint16(b[14:], reservedSectors)
	b[16] = 2 // FATs
	b[21] = 0xf8
	le.PutUint16(b[24:], 32) // sectors per track (nominal, as mkfs.fat on a file)
	le.PutUint16(b[26:], 64) // heads (nominal)
	le.PutUint32(b[28:], opt.HiddenSectors)
	le.PutUint32(b[32:], g.totalSectors)
	le.PutUint32(b[36:], g.fatSectors)
	le.PutUint32(b[44:], 2) // root directory cluster
	le.PutUint16(b[48:], fsInfoSector)
	le.PutUint16(b[50:], backupBoot)
	b[64] = 0x80
	b[66] = 0x29
	le.PutUint32(b[67:], opt.VolumeID)
	copy(b[71:82], label[:])
	copy(b[82:], "FAT32   ")
	// Boot code: halt forever if a PC ever jumps here (cli; hlt; jmp $-1).
	copy(b[90:], []byte{0xfa, 0xf4, 0xeb, 0xfd})
	b[510], b[511] = 0x55, 0xaa
	return b
}

func fsInfo(free, next, clusters uint32) []byte {
	b := make([]byte, sectorSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], 0x41615252)
	le.PutUint32(b[484:], 0x61417272)
	le.PutUint32(b[488:], free)
	if next > clusters+1 {
		next = 0xffffffff // full
	}
	le.PutUint32(b[492:], next)
	le.PutUint32(b[508:], 0xaa550000)
	return b
}

type ranges []Range

func (r *ranges) add(off, n int64) { *r = append(*r, Range{off, n}) }

func (r ranges) merged() []Range {
	s := append([]Range(nil), r...)
	sort.Slice(s, func(i, j int) bool { return s[i].Offset < s[j].Offset })
	var out []Range
	for _, x := range s {
		if l := len(out); l > 0 && out[l-1].Offset+out[l-1].Length >= x.Offset {
			out[l-1].Length = max(out[l-1].Length, x.Offset+x.Length-out[l-1].Offset)
			continue
		}
		out = append(out, x)
	}
	return out
}
