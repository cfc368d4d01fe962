package update

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"sort"

	"github.com/mkimage/mkimage/internal/bootstate"
)

// IDLen is the length of a version id (bootstate.IDLen: U-Boot's state
// file names versions and must keep its size when rewritten in place).
const IDLen = bootstate.IDLen

// CheckID accepts a version id (bootstate.ValidID).
func CheckID(id string) error { return bootstate.ValidID(id) }

// DeriveID returns the id of the version of board made of a root tree
// (rootHash: its fstree.Tree.Hash), boot files (name → sha256 hex) and a
// kernel command line: the first 8 bytes of a sha256 over all of them,
// each length-prefixed, so the same inputs give the same id and any change
// gives another. The root's send stream cannot stand for the root here:
// it carries the id (RootIdentity).
func DeriveID(board, cmdline, rootHash string, boot map[string]string) string {
	h := sha256.New()
	str := func(s string) {
		binary.Write(h, binary.LittleEndian, uint64(len(s)))
		io.WriteString(h, s)
	}
	str("mkimage version id 1")
	str(board)
	str(cmdline)
	str(rootHash)
	names := make([]string, 0, len(boot))
	for n := range boot {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		str(n)
		str(boot[n])
	}
	return hex.EncodeToString(h.Sum(nil)[:IDLen/2])
}

// RootIdentity returns the UUID and ctransid that identify version id's
// root subvolume in btrfs send streams. Every stream creating that root
// names them, and every incremental stream from it names them as its
// parent; an image holding the root records them as the subvolume's
// received UUID and stransid. So the root written into an image and the
// same root received from a bundle are one parent to `btrfs receive`,
// which finds an incremental stream's parent by received UUID (then by a
// subvolume's own UUID) in the filesystem's UUID tree.
//
// The UUID is the first 16 bytes of sha256("mkimage root subvolume\0" +
// id), marked as an RFC 9562 version 8 (custom) UUID; the ctransid is the
// id's 8 bytes read as a big-endian number, so `btrfs subvolume show`'s
// "Send transid", printed in hex, is the version id.
func RootIdentity(id string) (uuid [16]byte, ctransid uint64, err error) {
	if err := CheckID(id); err != nil {
		return uuid, 0, err
	}
	sum := sha256.Sum256([]byte("mkimage root subvolume\x00" + id))
	copy(uuid[:], sum[:16])
	uuid[6] = uuid[6]&0x0f | 0x80 // version 8
	uuid[8] = uuid[8]&0x3f | 0x80 // variant 10
	b, _ := hex.DecodeString(id)
	return uuid, binary.BigEndian.Uint64(b), nil
}
