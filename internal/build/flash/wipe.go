package flash

import (
	"bytes"

	"github.com/mkimage/mkimage/internal/bmap"
	"github.com/mkimage/mkimage/internal/ondisk"
)

// Stale data on a reused card is harmless where our filesystems keep their
// own metadata: the bmap covers everything the FAT and btrfs writers
// allocated, and neither reads blocks it did not write. What can confuse
// is an old *signature* in an area ours leave alone, seen by blkid, udev
// or the kernel's partition scan: an ext4/xfs/LUKS/swap header in the
// first MiB of a partition (btrfs leaves its first 64 KiB unused), an md
// or DDF RAID superblock in a partition's or the disk's last MiB, a backup
// GPT header in the disk's last sectors. So on block devices we zero the
// unmapped parts of the disk's first and last MiB and of every partition's
// first and last MiB (the partitions read from the image's MBR); the rest
// of the unmapped space is only discarded, which is a hint to the card,
// not a promise of zeros.
const wipeSpan = 1 << 20

// wipeZones returns the byte spans of a device of devSize bytes that must
// read as zero or image data, given the image's first sector.
func wipeZones(mbr []byte, devSize int64) []bmap.Extent {
	zones := []bmap.Extent{ext(0, wipeSpan), ext(devSize-wipeSpan, wipeSpan)}
	// A sector without a partition table has only the disk's zones.
	if t, err := ondisk.ReadMBR(bytes.NewReader(mbr)); err == nil {
		for _, p := range t.Partitions {
			n := min(wipeSpan, p.Size)
			zones = append(zones, ext(p.Start, n), ext(p.End()-n, n))
		}
	}
	// Clip to the device.
	var out []bmap.Extent
	for _, z := range zones {
		off, end := max(z.Off, 0), min(z.Off+z.Len, devSize)
		if end > off {
			out = append(out, ext(off, end-off))
		}
	}
	return out
}

// unmapped returns the parts of zones not covered by m's ranges (those
// get image data), merged and sorted.
func unmapped(zones []bmap.Extent, m *bmap.Map) []bmap.Extent {
	var out []bmap.Extent
	for _, z := range merge(zones) {
		off, end := z.Off, z.Off+z.Len
		for _, r := range m.Ranges {
			ro := r.First * m.BlockSize
			re := (r.Last + 1) * m.BlockSize
			if re <= off || ro >= end {
				continue
			}
			if ro > off {
				out = append(out, ext(off, ro-off))
			}
			off = max(off, re)
		}
		if end > off {
			out = append(out, ext(off, end-off))
		}
	}
	return out
}

// merge sorts byte extents and joins overlapping or touching ones.
func merge(es []bmap.Extent) []bmap.Extent {
	s := append([]bmap.Extent(nil), es...)
	for i := 1; i < len(s); i++ { // insertion sort: a handful of zones
		for j := i; j > 0 && s[j].Off < s[j-1].Off; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	var out []bmap.Extent
	for _, e := range s {
		if n := len(out); n > 0 && e.Off <= out[n-1].Off+out[n-1].Len {
			out[n-1].Len = max(out[n-1].Len, e.Off+e.Len-out[n-1].Off)
			continue
		}
		out = append(out, e)
	}
	return out
}

// gaps returns the unmapped spans of the image, block-aligned, for discard.
func gaps(m *bmap.Map) []bmap.Extent {
	var out []bmap.Extent
	next := int64(0)
	end := m.BlocksCount() * m.BlockSize
	for _, r := range m.Ranges {
		if off := r.First * m.BlockSize; off > next {
			out = append(out, ext(next, off-next))
		}
		next = (r.Last + 1) * m.BlockSize
	}
	if end > next {
		out = append(out, ext(next, end-next))
	}
	return out
}

// ext builds the extent [off, off+n).
func ext(off, n int64) bmap.Extent { return bmap.Extent{Off: off, Len: n} }
