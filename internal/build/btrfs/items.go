package btrfs

import (
	"sort"
	"time"
)

// ids are the filesystem's identities, derived from the seed.
type ids struct {
	fsid, devUUID, chunkUUID [16]byte
}

func (l *layout) devBytesUsed() uint64 {
	var n uint64
	for _, c := range l.chunks() {
		n += c.length * uint64(len(c.stripes))
	}
	return n
}

// devItem is the 98-byte DEV_ITEM body (also copied into the superblock).
func (l *layout) devItem(size uint64) []byte {
	e := enc(nil).u64(devID).u64(size).u64(l.devBytesUsed())
	e = e.u32(sectorSize).u32(sectorSize).u32(sectorSize)
	e = e.u64(0).u64(0).u64(0).u32(0).u8(0).u8(0)
	return e.bytes(l.ids.devUUID[:]).bytes(l.ids.fsid[:])
}

func (l *layout) chunkItem(c *chunk) []byte {
	e := enc(nil).u64(c.length).u64(extentTreeID).u64(stripeLen).u64(c.flags)
	e = e.u32(stripeLen).u32(stripeLen).u32(sectorSize).u16(uint16(len(c.stripes))).u16(1)
	for _, s := range c.stripes {
		e = e.u64(devID).u64(s).bytes(l.ids.devUUID[:])
	}
	return e
}

func (l *layout) chunkItems() []item {
	its := []item{{key{devItemsID, typeDevItem, devID}, l.devItem(l.minSize)}}
	for _, c := range l.chunks() {
		its = append(its, item{key{firstChunkTree, typeChunkItem, c.logical}, l.chunkItem(c)})
	}
	return its
}

func (l *layout) devItems() []item {
	var its []item
	for _, c := range l.chunks() {
		for _, s := range c.stripes {
			e := enc(nil).u64(chunkTreeID).u64(firstChunkTree).u64(c.logical).u64(c.length).bytes(l.ids.chunkUUID[:])
			its = append(its, item{key{devID, typeDevExtent, s}, e})
		}
	}
	sort.Slice(its, func(i, j int) bool { return its[i].key.less(its[j].key) })
	return its
}

// rootItem is the 439-byte ROOT_ITEM body of tree p.
func (l *layout) rootItem(p *tplan, fsTree bool, uuid [16]byte, t time.Time, recv *Received) []byte {
	ns := l.o.NodeSize
	addr, level := p.top(ns)
	legacy := inodeItem{size: 3, nbytes: uint64(ns), nlink: 1, mode: 0o40755}
	var flags, strans, rtrans uint64
	var received [16]byte
	var rt time.Time
	if recv != nil {
		flags, received, strans, rtrans, rt = rootSubvolRDOnly, recv.UUID, recv.Transid, generation, t
		// Without this flag the kernel takes the item for one written
		// before root flags existed and clears them on load.
		legacy.flags = inodeRootItemInit
	}
	e := enc(nil).inode(legacy).u64(generation)
	dirid := uint64(0)
	if fsTree {
		dirid = firstFreeID
	}
	e = e.u64(dirid).u64(addr).u64(0).u64(uint64(p.nblocks(ns) * ns)).u64(0).u64(flags).u32(1)
	e = e.zeros(17).u8(0).u8(level).u64(generation)
	e = e.bytes(uuid[:]).zeros(16).bytes(received[:])
	ctrans := uint64(0)
	var ct, ot time.Time
	if fsTree {
		ctrans, ct, ot = generation, t, t
	}
	e = e.u64(ctrans).u64(ctrans).u64(strans).u64(rtrans)
	e = e.timespec(ct).timespec(ot).timespec(time.Time{}).timespec(rt)
	return e.zeros(64)
}

func refBody(sv *subvol) []byte {
	return enc(nil).u64(sv.dirIno).u64(sv.index).u16(uint16(len(sv.name))).str(sv.name)
}

func (l *layout) rootItems() []item {
	var its []item
	add := func(k key, b []byte) { its = append(its, item{k, b}) }
	tree := func(id uint64) {
		add(key{id, typeRootItem, 0}, l.rootItem(l.byID[id], false, [16]byte{}, time.Time{}, nil))
	}
	tree(extentTreeID)
	tree(devTreeID)
	def := key{fsTreeID, typeRootItem, ^uint64(0)}
	if l.o.RootSubvolume != "" {
		def = key{l.svs[1].id, typeRootItem, 0}
	}
	fsItems := func(sv *subvol) {
		add(key{sv.id, typeRootItem, 0}, l.rootItem(l.byID[sv.id], true, sv.uuid, l.o.Time, sv.received))
		if sv.parent != nil {
			add(key{sv.id, typeRootBackref, sv.parent.id}, refBody(sv))
		}
		for _, c := range l.svs {
			if c.parent == sv {
				add(key{sv.id, typeRootRef, c.id}, refBody(c))
			}
		}
	}
	fsItems(l.svs[0])
	dir := inodeItem{nlink: 1, mode: 0o40755, atime: l.o.Time, ctime: l.o.Time, mtime: l.o.Time, otime: l.o.Time}
	add(key{rootTreeDirID, typeInodeItem, 0}, enc(nil).inode(dir))
	add(key{rootTreeDirID, typeInodeRef, rootTreeDirID}, enc(nil).u64(0).u16(2).str(".."))
	add(key{rootTreeDirID, typeDirItem, nameHash("default")}, enc(nil).dirEntry(def, ftDir, "default", nil))
	tree(csumTreeID)
	tree(uuidTreeID)
	tree(freeSpaceTreeID)
	for _, sv := range l.svs[1:] {
		fsItems(sv)
	}
	add(key{dataRelocTreeID, typeRootItem, 0}, l.rootItem(l.byID[dataRelocTreeID], true, [16]byte{}, time.Time{}, nil))
	return its
}

// extentItems: a block group item per chunk, a METADATA_ITEM per tree
// block, an EXTENT_ITEM per data extent.
func (l *layout) extentItems() []item {
	ns := l.o.NodeSize
	var its []item
	for _, c := range l.chunks() {
		its = append(its, item{key{c.logical, typeBlockGroupItem, c.length}, enc(nil).u64(c.used).u64(firstChunkTree).u64(c.flags)})
	}
	for _, p := range append([]*tplan{l.chunkT}, l.trees...) {
		for i, a := range p.addrs {
			b := enc(nil).u64(1).u64(generation).u64(2).u8(typeTreeBlockRef).u64(p.id)
			its = append(its, item{key{a, typeMetadataItem, uint64(p.level(i, ns))}, b})
		}
	}
	for _, f := range l.files {
		for _, pc := range f.pieces {
			b := enc(nil).u64(1).u64(generation).u64(1)
			b = b.u8(typeExtentDataRef).u64(f.sv.id).u64(f.rec.ino).u64(uint64(pc.off)).u32(1)
			its = append(its, item{key{pc.addr, typeExtentItem, pc.len}, b})
		}
	}
	sort.Slice(its, func(i, j int) bool { return its[i].key.less(its[j].key) })
	return its
}

func (l *layout) fstItems() []item {
	var its []item
	for _, c := range l.chunks() {
		free := c.free()
		its = append(its, item{key{c.logical, typeFreeSpaceInfo, c.length}, enc(nil).u32(uint32(len(free))).u32(0)})
		for _, f := range free {
			its = append(its, item{key{f.start, typeFreeSpaceExt, f.len}, nil})
		}
	}
	return its
}

// csumItems covers every data sector; csums is indexed by sector from
// dataStart (nil while planning).
func (l *layout) csumItems(csums []uint32) []item {
	maxN := uint64((l.o.NodeSize-headerSize-2*itemSize)/4 - 1)
	var its []item
	for _, r := range l.csumRuns {
		for off := uint64(0); off < r.len; {
			n := min((r.len-off)/sectorSize, maxN)
			start := r.start + off
			b := make(enc, 0, 4*n)
			if csums != nil {
				first := (start - l.dataStart) / sectorSize
				for _, c := range csums[first : first+n] {
					b = b.u32(c)
				}
			} else {
				b = b.zeros(int(4 * n))
			}
			its = append(its, item{key{extentCsumID, typeExtentCsum, start}, b})
			off += n * sectorSize
		}
	}
	return its
}

func (l *layout) uuidItems() []item {
	var its []item
	for _, sv := range l.svs {
		its = append(its, item{key{le.Uint64(sv.uuid[0:8]), typeUUIDSubvol, le.Uint64(sv.uuid[8:16])}, enc(nil).u64(sv.id)})
		if r := sv.received; r != nil {
			its = append(its, item{key{le.Uint64(r.UUID[0:8]), typeUUIDReceived, le.Uint64(r.UUID[8:16])}, enc(nil).u64(sv.id)})
		}
	}
	return mergeSameKey(its)
}
