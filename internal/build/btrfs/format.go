package btrfs

import (
	"encoding/binary"
	"hash/crc32"
	"time"
)

// On-disk constants (see /work/shared/notes/btrfs-format.md).
const (
	sectorSize  = 4096
	superOffset = 65536
	superSize   = 4096
	headerSize  = 101
	itemSize    = 25 // btrfs_item: disk key + offset + size
	keyPtrSize  = 33 // btrfs_key_ptr: disk key + blockptr + generation
	generation  = 1  // every generation/transid in the image
	stripeLen   = 65536

	mib = 1 << 20

	// Kernel maximum length of one data extent.
	maxExtent = 128 * mib
)

// Data chunks are cut at this length, like the kernel's own (a variable
// so tests can make many chunks from little data).
var maxDataChunk uint64 = 1 << 30

// Item types.
const (
	typeInodeItem      = 1
	typeInodeRef       = 12
	typeInodeExtref    = 13
	typeXattrItem      = 24
	typeDirItem        = 84
	typeDirIndex       = 96
	typeExtentData     = 108
	typeExtentCsum     = 128
	typeRootItem       = 132
	typeRootBackref    = 144
	typeRootRef        = 156
	typeExtentItem     = 168
	typeMetadataItem   = 169
	typeTreeBlockRef   = 176
	typeExtentDataRef  = 178
	typeBlockGroupItem = 192
	typeFreeSpaceInfo  = 198
	typeFreeSpaceExt   = 199
	typeDevExtent      = 204
	typeDevItem        = 216
	typeChunkItem      = 228
	typeUUIDSubvol     = 251
	typeUUIDReceived   = 252
)

// Well-known object ids.
const (
	rootTreeID      = 1
	extentTreeID    = 2
	chunkTreeID     = 3
	devTreeID       = 4
	fsTreeID        = 5
	rootTreeDirID   = 6
	csumTreeID      = 7
	uuidTreeID      = 9
	freeSpaceTreeID = 10
	firstFreeID     = 256
	dataRelocTreeID = ^uint64(8) // -9
	extentCsumID    = ^uint64(9) // -10
	firstChunkTree  = 256        // objectid of every CHUNK_ITEM
	devItemsID      = 1          // objectid of DEV_ITEM
	devID           = 1          // the one device
	maxInline       = sectorSize - 1
	headerFlags     = 0x0100000000000001 // WRITTEN, mixed backref rev 1
)

// Block group / chunk flags.
const (
	bgData     = 1
	bgSystem   = 2
	bgMetadata = 4
	bgDup      = 0x20
)

// Feature flags.
const (
	incompatMixedBackref  = 0x1
	incompatDefaultSubvol = 0x2
	incompatExtendedIref  = 0x40
	incompatSkinnyMeta    = 0x100
	incompatNoHoles       = 0x200
	compatROFreeSpaceTree = 0x1
	compatROFSTValid      = 0x2
)

// rootSubvolRDOnly is the read-only flag of a subvolume's root item;
// inodeRootItemInit, in the root item's legacy inode, says the item's
// flags are meant (BTRFS_INODE_ROOT_ITEM_INIT).
const (
	rootSubvolRDOnly  = 1
	inodeRootItemInit = 1 << 31
)

// Directory entry types.
const (
	ftReg     = 1
	ftDir     = 2
	ftChr     = 3
	ftBlk     = 4
	ftFifo    = 5
	ftSock    = 6
	ftSymlink = 7
	ftXattr   = 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crcRaw is the kernel's crc32c(seed, p): the CRC register update with no
// pre- or post-inversion.
func crcRaw(seed uint32, p []byte) uint32 {
	return ^crc32.Update(^seed, castagnoli, p)
}

// nameHash is the key offset of DIR_ITEM and XATTR_ITEM.
func nameHash(name string) uint64 {
	return uint64(crcRaw(0xFFFFFFFE, []byte(name)))
}

// extrefHash is the key offset of INODE_EXTREF.
func extrefHash(parent uint64, name string) uint64 {
	return uint64(crcRaw(uint32(parent), []byte(name)))
}

type key struct {
	objectid uint64
	typ      uint8
	offset   uint64
}

func (k key) less(o key) bool {
	if k.objectid != o.objectid {
		return k.objectid < o.objectid
	}
	if k.typ != o.typ {
		return k.typ < o.typ
	}
	return k.offset < o.offset
}

func (k key) put(b []byte) {
	le.PutUint64(b[0:], k.objectid)
	b[8] = k.typ
	le.PutUint64(b[9:], k.offset)
}

// item is one leaf item: its key and body.
type item struct {
	key  key
	data []byte
}

var le = binary.LittleEndian

// enc appends little-endian fields to a byte slice.
type enc []byte

func (e enc) u8(v uint8) enc   { return append(e, v) }
func (e enc) u16(v uint16) enc { return le.AppendUint16(e, v) }
func (e enc) u32(v uint32) enc { return le.AppendUint32(e, v) }
func (e enc) u64(v uint64) enc { return le.AppendUint64(e, v) }
func (e enc) bytes(p []byte) enc {
	return append(e, p...)
}
func (e enc) str(s string) enc { return append(e, s...) }
func (e enc) key(k key) enc {
	return e.u64(k.objectid).u8(k.typ).u64(k.offset)
}
func (e enc) zeros(n int) enc { return append(e, make([]byte, n)...) }

// timespec appends a btrfs_timespec {s64 sec, u32 nsec}. The zero
// time.Time is written as the Unix epoch.
func (e enc) timespec(t time.Time) enc {
	if t.IsZero() {
		return e.u64(0).u32(0)
	}
	return e.u64(uint64(t.Unix())).u32(uint32(t.Nanosecond()))
}

// inodeItem is the 160-byte btrfs_inode_item.
type inodeItem struct {
	size, nbytes        uint64
	nlink               uint32
	uid, gid, mode      uint32
	rdev                uint64
	flags               uint64
	atime, ctime, mtime time.Time
	otime               time.Time
}

func (e enc) inode(in inodeItem) enc {
	e = e.u64(generation).u64(generation).u64(in.size).u64(in.nbytes).u64(0)
	e = e.u32(in.nlink).u32(in.uid).u32(in.gid).u32(in.mode)
	e = e.u64(in.rdev).u64(in.flags).u64(0).zeros(32)
	return e.timespec(in.atime).timespec(in.ctime).timespec(in.mtime).timespec(in.otime)
}

// dirEntry appends a btrfs_dir_item header plus name and data.
func (e enc) dirEntry(loc key, typ uint8, name string, data []byte) enc {
	return e.key(loc).u64(generation).u16(uint16(len(data))).u16(uint16(len(name))).u8(typ).str(name).bytes(data)
}
