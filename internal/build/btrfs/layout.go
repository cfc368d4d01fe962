package btrfs

import (
	"fmt"
	"sort"

	"github.com/mkimage/mkimage/internal/fstree"
)

// Superblock copies beyond the primary. The kernel rewrites them at every
// commit, so the 64 KiB at each must hold no extent.
var mirrorOffsets = []uint64{64 * mib, 256 << 30}

const mirrorLen = 65536

// chunk is one chunk with its block group.
type chunk struct {
	logical, length uint64
	flags           uint64
	stripes         []uint64 // physical offsets
	used            uint64
	alloc           []span // allocated logical ranges, sorted
}

type span struct{ start, len uint64 }

// excluded returns the logical ranges of c whose stripes hold a
// superblock mirror.
func (c *chunk) excluded() []span {
	var ex []span
	for _, s := range c.stripes {
		for _, m := range mirrorOffsets {
			if m >= s && m < s+c.length {
				ex = append(ex, span{c.logical + (m - s), mirrorLen})
			}
		}
	}
	sort.Slice(ex, func(i, j int) bool { return ex[i].start < ex[j].start })
	return ex
}

// free returns the block group's free ranges: everything not allocated,
// merged (mirror ranges count as free, as in the kernel's FST).
func (c *chunk) free() []span {
	var out []span
	pos := c.logical
	for _, a := range c.alloc {
		if a.start > pos {
			out = append(out, span{pos, a.start - pos})
		}
		pos = a.start + a.len
	}
	if end := c.logical + c.length; end > pos {
		out = append(out, span{pos, end - pos})
	}
	return out
}

// allocBlocks hands out n node-sized blocks from the start of c, skipping
// mirror ranges. ok is false when c is too small.
func (c *chunk) allocBlocks(n, nodesize int) (addrs []uint64, ok bool) {
	ex := c.excluded()
	pos := c.logical
	end := c.logical + c.length
	for len(addrs) < n {
		for _, e := range ex {
			if pos < e.start+e.len && pos+uint64(nodesize) > e.start {
				pos = e.start + e.len
			}
		}
		if pos+uint64(nodesize) > end {
			return nil, false
		}
		addrs = append(addrs, pos)
		pos += uint64(nodesize)
	}
	return addrs, true
}

// dataAlloc places data extents one after another in data chunks of at
// most maxDataChunk bytes, starting a new chunk when one is full.
type dataAlloc struct {
	chunks []*chunk
	pos    uint64
	limit  uint64
}

func (a *dataAlloc) take(n uint64) (addr, got uint64) {
	for {
		c := a.chunks[len(a.chunks)-1]
		if a.pos >= a.limit {
			c.length = a.limit - c.logical
			nc := &chunk{logical: a.limit, flags: bgData, stripes: []uint64{a.limit}}
			a.chunks = append(a.chunks, nc)
			a.pos, a.limit = a.limit, a.limit+maxDataChunk
			continue
		}
		stop := min(a.limit, a.pos+min(n, maxExtent))
		moved := false
		for _, m := range mirrorOffsets {
			if a.pos >= m && a.pos < m+mirrorLen {
				a.pos = m + mirrorLen
				moved = true
			} else if m > a.pos && m < stop {
				stop = m
			}
		}
		if moved {
			continue
		}
		got = stop - a.pos
		addr = a.pos
		a.pos = stop
		c.alloc = append(c.alloc, span{addr, got})
		c.used += got
		return addr, got
	}
}

// tplan is one tree's place in the metadata: its items (once known),
// leaf count and block addresses.
type tplan struct {
	id      uint64
	items   []item
	nleaves int
	addrs   []uint64
	tree    *btree
}

func (p *tplan) nblocks(nodesize int) int { return blocksFor(p.nleaves, nodesize) }

// level of block i (leaves first, then each node level in turn), as
// buildTree orders them.
func (p *tplan) level(i, nodesize int) uint8 {
	n := p.nleaves
	lv := uint8(0)
	for i >= n {
		i -= n
		n = (n + ptrsPerNode(nodesize) - 1) / ptrsPerNode(nodesize)
		lv++
	}
	return lv
}

// top returns the root block's address and level (zero before
// allocation).
func (p *tplan) top(nodesize int) (addr uint64, level uint8) {
	n := p.nblocks(nodesize)
	if len(p.addrs) == n {
		addr = p.addrs[n-1]
	}
	return addr, p.level(n-1, nodesize)
}

func (p *tplan) setItems(its []item, nodesize int) error {
	sizes := make([]int, len(its))
	for i, it := range its {
		sizes[i] = len(it.data)
	}
	c, err := leafSplit(sizes, nodesize)
	if err != nil {
		return fmt.Errorf("tree %d: %w", int64(p.id), err)
	}
	p.items, p.nleaves = its, len(c)
	return nil
}

// layout is the whole plan of an image: what goes where. It is computed
// from sizes alone, so MinSize needs no file data.
type layout struct {
	o     Options
	ids   ids
	svs   []*subvol
	files []*fileData // regular extents, in disk order
	all   []*fileData
	inl   []*fileData // inline files and symlinks

	sys, meta *chunk
	data      []*chunk
	dataStart uint64
	dataEnd   uint64
	csumRuns  []span // contiguous data, one EXTENT_CSUM item each

	// Trees: chunk tree (in sys) and the rest (in meta).
	chunkT  *tplan
	trees   []*tplan // root, extent, dev, fs trees, csum, uuid, fst, data-reloc
	byID    map[uint64]*tplan
	minSize uint64
}

func (l *layout) stripes() int {
	if l.o.Metadata == Single {
		return 1
	}
	return 2
}

func (l *layout) metaFlags() uint64 {
	if l.o.Metadata == Single {
		return 0
	}
	return bgDup
}

func (l *layout) chunks() []*chunk {
	out := []*chunk{l.sys}
	out = append(out, l.data...)
	return append(out, l.meta)
}

// plan lays out the image.
func plan(t *fstree.Tree, o Options) (*layout, error) {
	if t == nil || t.Root == nil || !t.Root.IsDir() {
		return nil, fmt.Errorf("btrfs: tree root is not a directory")
	}
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("btrfs: %w", err)
	}
	l := &layout{o: o, byID: map[uint64]*tplan{}}
	ns := o.NodeSize
	svs, err := splitSubvolumes(t, &l.o)
	if err != nil {
		return nil, err
	}
	l.svs = svs
	for _, sv := range svs {
		le.PutUint64(sv.uuid[:], sv.id) // placeholder until the seed is known
	}
	roots := map[*fstree.Inode]*subvol{}
	for _, sv := range svs {
		roots[sv.root] = sv
	}
	for _, sv := range svs {
		if err := sv.number(roots); err != nil {
			return nil, err
		}
	}
	// Subvolume entries in their parents: number() of the parent set
	// dirIno and index. The root subvolume sits in tree 5's root dir.
	inlineMax := int64(min(maxInline, ns-147))
	if o.MaxInline > 0 {
		inlineMax = min(inlineMax, int64(o.MaxInline))
	}
	files := map[*inodeRec]*fileData{}
	for _, sv := range svs {
		for _, rec := range sv.inodes {
			if typ := rec.n.Type(); typ != fstree.ModeRegular && typ != fstree.ModeSymlink {
				continue
			}
			f, err := planFile(rec, sv, inlineMax)
			if err != nil {
				return nil, err
			}
			files[rec] = f
			l.all = append(l.all, f)
			if f.inline != nil && rec.n.Type() == fstree.ModeRegular {
				l.inl = append(l.inl, f)
			}
			if len(f.ranges) > 0 {
				l.files = append(l.files, f)
			}
		}
	}

	// Physical layout: [1 MiB: SYSTEM stripes][DATA chunks][METADATA
	// stripes]. Logical addresses equal the first stripe's.
	const sysLen = 4 * mib
	l.sys = &chunk{logical: mib, length: sysLen, flags: bgSystem | l.metaFlags()}
	for i := 0; i < l.stripes(); i++ {
		l.sys.stripes = append(l.sys.stripes, mib+uint64(i)*sysLen)
	}
	l.dataStart = mib + uint64(l.stripes())*sysLen
	a := &dataAlloc{chunks: []*chunk{{logical: l.dataStart, flags: bgData, stripes: []uint64{l.dataStart}}}, pos: l.dataStart, limit: l.dataStart + maxDataChunk}
	for _, f := range l.files {
		for _, r := range f.ranges {
			off, left := r.off, uint64(r.len)
			for left > 0 {
				addr, got := a.take(left)
				f.pieces = append(f.pieces, piece{off: off, addr: addr, len: got})
				if k := len(l.csumRuns) - 1; k >= 0 && l.csumRuns[k].start+l.csumRuns[k].len == addr {
					l.csumRuns[k].len += got
				} else {
					l.csumRuns = append(l.csumRuns, span{addr, got})
				}
				off += int64(got)
				left -= got
			}
		}
	}
	last := a.chunks[len(a.chunks)-1]
	last.length = max((a.pos-last.logical+mib-1)&^(mib-1), mib)
	l.data = a.chunks
	l.dataEnd = last.logical + last.length

	// Fs trees, with their items (inline data still to be read).
	for _, sv := range svs {
		its, err := sv.buildItems(&l.o, files)
		if err != nil {
			return nil, err
		}
		sv.items = its
	}
	// Metadata trees in allocation order.
	add := func(id uint64, its []item) error {
		p := &tplan{id: id, nleaves: 1}
		l.trees = append(l.trees, p)
		l.byID[id] = p
		if its == nil {
			return nil
		}
		return p.setItems(its, ns)
	}
	l.chunkT = &tplan{id: chunkTreeID, nleaves: 1}
	l.byID[chunkTreeID] = l.chunkT
	for _, step := range []struct {
		id  uint64
		its []item
	}{
		{rootTreeID, nil}, {extentTreeID, nil}, {devTreeID, nil},
	} {
		if err := add(step.id, step.its); err != nil {
			return nil, err
		}
	}
	for _, sv := range svs {
		if err := add(sv.id, sv.items); err != nil {
			return nil, err
		}
	}
	if err := add(csumTreeID, l.csumItems(nil)); err != nil {
		return nil, err
	}
	if err := add(uuidTreeID, l.uuidItems()); err != nil {
		return nil, err
	}
	if err := add(freeSpaceTreeID, nil); err != nil {
		return nil, err
	}
	if err := add(dataRelocTreeID, rootDirItems(l.o.Time)); err != nil {
		return nil, err
	}
	// Trees whose size does not depend on addresses.
	l.meta = &chunk{flags: bgMetadata | l.metaFlags()}
	if err := l.chunkT.setItems(l.chunkItems(), ns); err != nil {
		return nil, err
	}
	if err := l.byID[devTreeID].setItems(l.devItems(), ns); err != nil {
		return nil, err
	}
	if err := l.byID[rootTreeID].setItems(l.rootItems(), ns); err != nil {
		return nil, err
	}
	if err := l.allocMeta(); err != nil {
		return nil, err
	}
	l.minSize = l.meta.stripes[len(l.meta.stripes)-1] + l.meta.length
	return l, nil
}

// allocMeta finds the sizes of the extent tree and the free-space tree
// (which describe every block, themselves included) by iterating to a
// fixed point, and gives every metadata block its address.
func (l *layout) allocMeta() error {
	ns := l.o.NodeSize
	ext, fst := l.byID[extentTreeID], l.byID[freeSpaceTreeID]
	ext.nleaves, fst.nleaves = 1, 1
	for iter := 0; ; iter++ {
		if iter > 20 {
			return fmt.Errorf("btrfs: metadata layout did not settle (extent tree %d leaves, free-space tree %d leaves)", ext.nleaves, fst.nleaves)
		}
		nmeta := 0
		for _, p := range l.trees {
			nmeta += p.nblocks(ns)
		}
		used := uint64(nmeta * ns)
		// Room for the kernel's first commits after mount.
		need := used + metaSlack(used)
		length := (need + mib - 1) &^ (mib - 1)
		var addrs []uint64
		for {
			l.meta.length = length
			l.meta.logical = l.dataEnd
			l.meta.stripes = l.meta.stripes[:0]
			for i := 0; i < l.stripes(); i++ {
				l.meta.stripes = append(l.meta.stripes, l.dataEnd+uint64(i)*length)
			}
			var ok bool
			if addrs, ok = l.meta.allocBlocks(nmeta, ns); ok {
				break
			}
			length += mib
		}
		k := 0
		for _, p := range l.trees {
			p.addrs = addrs[k : k+p.nblocks(ns)]
			k += p.nblocks(ns)
		}
		l.chunkT.addrs, _ = l.sys.allocBlocks(l.chunkT.nblocks(ns), ns)
		// Allocation lists for the free-space tree.
		l.sys.alloc = l.sys.alloc[:0]
		l.sys.used = 0
		for _, a := range l.chunkT.addrs {
			l.sys.alloc = append(l.sys.alloc, span{a, uint64(ns)})
			l.sys.used += uint64(ns)
		}
		l.meta.alloc = l.meta.alloc[:0]
		l.meta.used = 0
		for _, a := range addrs {
			l.meta.alloc = append(l.meta.alloc, span{a, uint64(ns)})
			l.meta.used += uint64(ns)
		}
		oldExt, oldFst := ext.nleaves, fst.nleaves
		if err := ext.setItems(l.extentItems(), ns); err != nil {
			return err
		}
		if err := fst.setItems(l.fstItems(), ns); err != nil {
			return err
		}
		if ext.nleaves == oldExt && fst.nleaves == oldFst {
			return nil
		}
		ext.nleaves, fst.nleaves = max(ext.nleaves, oldExt), max(fst.nleaves, oldFst)
	}
}

// metaSlack is the free room left in the metadata chunk for the kernel's
// first commits.
// 4 MiB plus 1/16 is enough for the first commits; a node grows the
// filesystem (resize max works even on a minimal image) before filling it.
var metaSlack = func(used uint64) uint64 { return used/16 + 4*mib }
