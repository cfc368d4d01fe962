// Package btrfs writes a complete single-device btrfs filesystem from an
// fstree.Tree, without root, loop devices or mkfs: every tree (chunk, dev,
// root, extent, fs, csum, free-space, uuid, data-reloc) is laid out
// bottom-up in one pass, file data is read once and streamed to the
// output with its checksums.
//
// The format facts come from /work/shared/notes/btrfs-format.md. The
// image uses nodesize 16 KiB (by default), sectorsize 4 KiB, crc32c,
// skinny metadata, NO_HOLES, a free-space tree and generation 1
// everywhere. Layout, in device offsets:
//
//	[0, 1 MiB)          primary superblock at 64 KiB
//	[1 MiB, ...)        SYSTEM chunk stripes (chunk tree)
//	then                DATA chunks (<= 1 GiB each), file data in tree order
//	then                METADATA chunk stripes (DUP: two copies)
//
// Unwritten ranges are assumed to read as zero (a fresh or truncated
// file, or a zeroed partition); btrfs never reads them as metadata.
package btrfs

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sort"
	"time"

	"github.com/mkimage/mkimage/internal/fstree"
)

// Profile is the metadata block group profile.
type Profile int

const (
	DUP    Profile = iota // two copies of every tree block (the default)
	Single                // one copy
)

// Options control the image. The zero value is valid.
type Options struct {
	Label string
	// Seed determines every UUID (fsid, device, chunk tree, subvolumes).
	// Nil: derived from the tree's content, so the same tree gives the
	// same image.
	Seed     []byte
	Metadata Profile
	// Size is the filesystem size in bytes (the partition size), rounded
	// down to 4 KiB. 0: the smallest size that fits plus Headroom.
	Size     int64
	Headroom int64
	// Time is the otime of subvolumes and the ctime of their root items,
	// and the times of directories the writer creates. Zero: the tree
	// root's mtime.
	Time time.Time
	// RootSubvolume, if set, is the name (like "@") of a top-level
	// subvolume that holds the whole tree and is made the default
	// subvolume, so the kernel mounts it with no options.
	RootSubvolume string
	// Subvolumes are directory paths inside the tree to turn into nested
	// subvolumes (created empty when absent).
	Subvolumes []string
	// Received makes nested subvolumes (keys: paths from Subvolumes)
	// read-only copies of a send stream's subvolume, as `btrfs receive`
	// leaves one: received UUID and stransid set, and the UUID tree
	// entry receive searches to find the parent of an incremental stream.
	// An update made against that version then applies to this image.
	Received map[string]Received
	// NodeSize is the tree block size: a power of two from 4096 to
	// 65536; 0 means 16384.
	NodeSize int
	// MaxInline is the largest file stored inside the metadata (inline
	// extent). 0 means the format's limit: 4095 bytes with 16 KiB nodes.
	// With DUP metadata inline data is stored twice, so a lower limit
	// (the kernel's own default is 2048) can give a smaller image.
	MaxInline int
	// Progress, if set, is called as Write goes with the bytes written
	// so far and the bytes it writes in all (known once it has planned:
	// the first call has done 0).
	Progress func(done, total int64)
}

// Received is the identity of the stream a subvolume was received from.
type Received struct {
	UUID    [16]byte
	Transid uint64 // the stream's ctransid
}

// Extent is a byte range of the image.
type Extent struct {
	Offset, Length int64
}

// Result describes a written image.
type Result struct {
	Size    int64 // filesystem size (device total_bytes)
	Used    int64 // bytes used by data and metadata (super bytes_used)
	FSID    [16]byte
	DevUUID [16]byte
	// Mapped lists the byte ranges written, sorted and merged: everything
	// else in [0, Size) is zero (for a block map).
	Mapped []Extent
}

func (o *Options) fill(t *fstree.Tree) error {
	if o.NodeSize == 0 {
		o.NodeSize = 16384
	}
	if o.NodeSize < sectorSize || o.NodeSize > 65536 || o.NodeSize&(o.NodeSize-1) != 0 {
		return fmt.Errorf("btrfs: node size %d: must be a power of two from 4096 to 65536", o.NodeSize)
	}
	if o.Metadata != DUP && o.Metadata != Single {
		return fmt.Errorf("btrfs: unknown metadata profile %d", o.Metadata)
	}
	if len(o.Label) > 255 {
		return fmt.Errorf("btrfs: label is %d bytes; at most 255", len(o.Label))
	}
	if o.MaxInline < 0 {
		return fmt.Errorf("btrfs: negative MaxInline %d", o.MaxInline)
	}
	if o.Size < 0 || o.Headroom < 0 {
		return fmt.Errorf("btrfs: negative size %d or headroom %d", o.Size, o.Headroom)
	}
	if o.Time.IsZero() && t != nil && t.Root != nil {
		o.Time = t.Root.Mtime
	}
	return nil
}

// MinSize returns the smallest filesystem size that holds t with o. It
// reads no file data.
func MinSize(t *fstree.Tree, o Options) (int64, error) {
	if err := o.fill(t); err != nil {
		return 0, err
	}
	l, err := plan(t, o)
	if err != nil {
		return 0, err
	}
	return int64(l.minSize), nil
}

// Write writes the filesystem for t into w from offset 0. Ranges it does
// not write must read as zero. On error, w holds partial output.
func Write(w io.WriterAt, t *fstree.Tree, o Options) (*Result, error) {
	if err := o.fill(t); err != nil {
		return nil, err
	}
	l, err := plan(t, o)
	if err != nil {
		return nil, err
	}
	o = l.o
	size := uint64(o.Size) &^ (sectorSize - 1)
	if o.Size == 0 {
		size = (l.minSize + uint64(o.Headroom) + sectorSize - 1) &^ (sectorSize - 1)
	}
	if size < l.minSize {
		return nil, fmt.Errorf("btrfs: filesystem size %d bytes is too small: this tree needs at least %d bytes (%d MiB)", o.Size, l.minSize, (l.minSize+mib-1)/mib)
	}
	ns := o.NodeSize
	out := &output{w: w, progress: o.Progress, total: l.writeBytes(size)}
	if out.progress != nil {
		out.progress(0, out.total)
	}

	// Data pass: every file read once, data and csums written in order.
	csums, err := l.writeData(out)
	if err != nil {
		return nil, err
	}
	l.deriveIDs(csums)

	// Fill the trees that hold addresses and identities.
	sets := []struct {
		p   *tplan
		its []item
	}{
		{l.chunkT, nil}, {l.byID[devTreeID], l.devItems()}, {l.byID[rootTreeID], l.rootItems()},
		{l.byID[csumTreeID], l.csumItems(csums)}, {l.byID[uuidTreeID], l.uuidItems()},
	}
	for _, s := range sets {
		its := s.its
		if s.p == l.chunkT {
			its = l.chunkItems()
			its[0].data = l.devItem(size)
		}
		n := s.p.nleaves
		if err := s.p.setItems(its, ns); err != nil {
			return nil, err
		}
		if s.p.nleaves != n {
			return nil, fmt.Errorf("btrfs: internal error: tree %d changed from %d to %d leaves", int64(s.p.id), n, s.p.nleaves)
		}
	}
	h := headerInfo{fsid: l.ids.fsid, chunkUUID: l.ids.chunkUUID}
	for _, p := range append([]*tplan{l.chunkT}, l.trees...) {
		bt, err := buildTree(p.id, p.items, ns)
		if err != nil {
			return nil, err
		}
		if len(bt.blocks) != len(p.addrs) {
			return nil, fmt.Errorf("btrfs: internal error: tree %d has %d blocks, %d planned", int64(p.id), len(bt.blocks), len(p.addrs))
		}
		for i, b := range bt.blocks {
			b.addr = p.addrs[i]
		}
		bt.finish(h)
		p.tree = bt
	}
	if err := l.writeMeta(out, l.sys, []*tplan{l.chunkT}); err != nil {
		return nil, err
	}
	if err := l.writeMeta(out, l.meta, l.trees); err != nil {
		return nil, err
	}
	used, err := l.writeSupers(out, size)
	if err != nil {
		return nil, err
	}
	return &Result{Size: int64(size), Used: int64(used), FSID: l.ids.fsid, DevUUID: l.ids.devUUID, Mapped: out.extents()}, nil
}

// output writes to the image and remembers what it wrote.
type output struct {
	w           io.WriterAt
	mapped      []Extent
	progress    func(done, total int64)
	done, total int64
}

// writeBytes is what Write writes for a filesystem of size bytes: the
// regular extents, every copy of every tree block, the superblocks.
func (l *layout) writeBytes(size uint64) int64 {
	var n uint64
	for _, f := range l.all {
		if f.rec.n.Type() != fstree.ModeRegular || f.inline != nil {
			continue
		}
		for _, p := range f.pieces {
			n += p.len
		}
	}
	ns := uint64(l.o.NodeSize)
	n += uint64(len(l.chunkT.addrs)*len(l.sys.stripes)) * ns
	for _, p := range l.trees {
		n += uint64(len(p.addrs)*len(l.meta.stripes)) * ns
	}
	for _, off := range append([]uint64{superOffset}, mirrorOffsets...) {
		if off+superSize <= size {
			n += superSize
		}
	}
	return int64(n)
}

func (o *output) writeAt(p []byte, off uint64) error {
	if len(p) == 0 {
		return nil
	}
	if _, err := o.w.WriteAt(p, int64(off)); err != nil {
		return fmt.Errorf("btrfs: writing %d bytes at %d: %w", len(p), off, err)
	}
	o.mapped = append(o.mapped, Extent{int64(off), int64(len(p))})
	o.done += int64(len(p))
	if o.progress != nil {
		o.progress(o.done, o.total)
	}
	return nil
}

func (o *output) extents() []Extent {
	m := append([]Extent(nil), o.mapped...)
	sort.Slice(m, func(i, j int) bool { return m[i].Offset < m[j].Offset })
	var out []Extent
	for _, e := range m {
		if k := len(out) - 1; k >= 0 && out[k].Offset+out[k].Length >= e.Offset {
			out[k].Length = max(out[k].Length, e.Offset+e.Length-out[k].Offset)
			continue
		}
		out = append(out, e)
	}
	return out
}

// deriveIDs makes every UUID from the seed (or, without one, from a hash
// of the fs trees and the data checksums).
func (l *layout) deriveIDs(csums []uint32) {
	seed := l.o.Seed
	if seed == nil {
		h := sha256.New()
		var b [8]byte
		for _, sv := range l.svs {
			for _, it := range sv.items {
				le.PutUint64(b[:], it.key.objectid)
				h.Write(b[:])
				h.Write([]byte{it.key.typ})
				le.PutUint64(b[:], it.key.offset)
				h.Write(b[:])
				le.PutUint64(b[:], uint64(len(it.data)))
				h.Write(b[:])
				h.Write(it.data)
			}
		}
		cb := make([]byte, 0, 4*len(csums))
		for _, c := range csums {
			cb = le.AppendUint32(cb, c)
		}
		h.Write(cb)
		fmt.Fprintf(h, "%q %d %d %q %q %d", l.o.Label, l.o.Metadata, l.o.NodeSize, l.o.RootSubvolume, l.o.Subvolumes, l.o.MaxInline)
		for _, sv := range l.svs {
			if sv.received != nil {
				fmt.Fprintf(h, " received %q %x %d", sv.path, sv.received.UUID, sv.received.Transid)
			}
		}
		seed = h.Sum(nil)
	}
	uuid := func(what string) (u [16]byte) {
		h := sha256.New()
		h.Write(seed)
		h.Write([]byte("\x00mkimage btrfs " + what))
		copy(u[:], h.Sum(nil))
		u[6] = u[6]&0x0f | 0x40 // version 4 layout, as uuidgen prints
		u[8] = u[8]&0x3f | 0x80
		return u
	}
	l.ids = ids{fsid: uuid("fsid"), devUUID: uuid("device"), chunkUUID: uuid("chunk tree")}
	for _, sv := range l.svs {
		sv.uuid = uuid(fmt.Sprintf("subvolume %d", sv.id))
	}
}

// writeMeta writes the blocks of trees to every stripe of c, in runs of
// adjacent blocks.
func (l *layout) writeMeta(out *output, c *chunk, trees []*tplan) error {
	ns := uint64(l.o.NodeSize)
	var blocks []*block
	for _, p := range trees {
		blocks = append(blocks, p.tree.blocks...)
	}
	sort.Slice(blocks, func(i, j int) bool { return blocks[i].addr < blocks[j].addr })
	for i := 0; i < len(blocks); {
		j := i + 1
		for j < len(blocks) && blocks[j].addr == blocks[j-1].addr+ns {
			j++
		}
		run := make([]byte, 0, uint64(j-i)*ns)
		for _, b := range blocks[i:j] {
			run = append(run, b.buf...)
		}
		for _, s := range c.stripes {
			if err := out.writeAt(run, s+(blocks[i].addr-c.logical)); err != nil {
				return err
			}
		}
		i = j
	}
	return nil
}

func (l *layout) writeSupers(out *output, size uint64) (used uint64, err error) {
	ns := l.o.NodeSize
	for _, c := range l.chunks() {
		used += c.used
	}
	sb := make([]byte, superSize)
	copy(sb[32:], l.ids.fsid[:])
	le.PutUint64(sb[56:], 1)
	copy(sb[64:], "_BHRfS_M")
	le.PutUint64(sb[72:], generation)
	rootAddr, rootLevel := l.byID[rootTreeID].top(ns)
	chunkAddr, chunkLevel := l.chunkT.top(ns)
	le.PutUint64(sb[80:], rootAddr)
	le.PutUint64(sb[88:], chunkAddr)
	le.PutUint64(sb[112:], size)
	le.PutUint64(sb[120:], used)
	le.PutUint64(sb[128:], rootTreeDirID)
	le.PutUint64(sb[136:], 1)
	le.PutUint32(sb[144:], sectorSize)
	le.PutUint32(sb[148:], uint32(ns))
	le.PutUint32(sb[152:], uint32(ns))
	le.PutUint32(sb[156:], sectorSize)
	sys := enc(nil).key(key{firstChunkTree, typeChunkItem, l.sys.logical}).bytes(l.chunkItem(l.sys))
	le.PutUint32(sb[160:], uint32(len(sys)))
	le.PutUint64(sb[164:], generation)
	le.PutUint64(sb[180:], compatROFreeSpaceTree|compatROFSTValid)
	incompat := uint64(incompatMixedBackref | incompatExtendedIref | incompatSkinnyMeta | incompatNoHoles)
	if l.o.RootSubvolume != "" {
		incompat |= incompatDefaultSubvol
	}
	le.PutUint64(sb[188:], incompat)
	le.PutUint16(sb[196:], 0) // crc32c
	sb[198] = rootLevel
	sb[199] = chunkLevel
	copy(sb[201:], l.devItem(size))
	copy(sb[299:], l.o.Label)
	le.PutUint64(sb[563:], generation) // uuid tree written
	copy(sb[811:], sys)
	for _, off := range append([]uint64{superOffset}, mirrorOffsets...) {
		if off+superSize > size {
			break
		}
		le.PutUint64(sb[48:], off)
		le.PutUint32(sb[0:], crc32.Checksum(sb[32:], castagnoli))
		if err := out.writeAt(sb, off); err != nil {
			return 0, err
		}
	}
	return used, nil
}

var errShort = errors.New("content is shorter than its size")
