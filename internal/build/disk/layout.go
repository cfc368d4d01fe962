// Package disk plans the partition layout of a board's card image, places
// the board's bootloader blob and reads all of that back for `mkimage
// inspect`. The MBR itself is package ondisk's, which both sides share.
package disk

import (
	"fmt"

	"github.com/mkimage/mkimage/internal/ondisk"

	"github.com/mkimage/mkimage/boards"
)

// Align is where partitions start: multiples of 4 MiB suit SD cards'
// erase blocks.
const Align = 4 << 20

// Layout is the planned disk: a FAT32 boot partition (1, bootable) and a
// Linux root partition (2).
type Layout struct {
	Board      string             `json:"board"`
	Partitions []ondisk.Partition `json:"partitions"`
	Size       int64              `json:"size"`
}

// Boot returns partition 1.
func (l Layout) Boot() ondisk.Partition { return l.Partitions[0] }

// Root returns partition 2.
func (l Layout) Root() ondisk.Partition { return l.Partitions[1] }

// MBR returns the table for this layout.
func (l Layout) MBR(diskID uint32) ondisk.MBR {
	return ondisk.MBR{DiskID: diskID, Partitions: l.Partitions}
}

func alignUp(n, a int64) int64 { return (n + a - 1) / a * a }

// Plan places the boot partition at the board's first partition offset and
// the root partition on the next 4 MiB boundary after it. The disk ends
// where the root partition does.
func Plan(board *boards.Board, bootSize, rootSize int64) (Layout, error) {
	if board == nil {
		return Layout{}, fmt.Errorf("no board")
	}
	for _, s := range []struct {
		name string
		v    int64
	}{{"boot partition", bootSize}, {"root partition", rootSize}} {
		if s.v <= 0 || s.v%ondisk.SectorSize != 0 {
			return Layout{}, fmt.Errorf("%s size %d bytes: want a positive multiple of %d", s.name, s.v, ondisk.SectorSize)
		}
	}
	first := board.FirstPartitionOffset()
	if first <= 0 || first%ondisk.SectorSize != 0 {
		return Layout{}, fmt.Errorf("board %s: first partition offset %d is not a positive whole sector", board.Name, first)
	}
	boot := ondisk.Partition{Number: 1, Type: ondisk.TypeFAT32LBA, Bootable: true, Start: first, Size: bootSize}
	root := ondisk.Partition{Number: 2, Type: ondisk.TypeLinux, Start: alignUp(boot.End(), Align), Size: rootSize}
	if root.End()/ondisk.SectorSize > 1<<32 {
		return Layout{}, fmt.Errorf("disk of %d bytes exceeds the MBR's 2 TiB limit", root.End())
	}
	return Layout{Board: board.Name, Partitions: []ondisk.Partition{boot, root}, Size: root.End()}, nil
}
