package btrfs

import (
	"fmt"
	"hash/crc32"
)

// block is one tree block (leaf or node) of nodesize bytes.
type block struct {
	buf      []byte
	level    uint8
	first    key
	nitems   int
	children []*block
	addr     uint64
}

// btree is a whole tree built bottom-up from sorted items.
type btree struct {
	owner  uint64
	blocks []*block // leaves first, the root last
}

// leafSplit returns how many items go into each leaf when items of the
// given sizes are packed greedily into leaves of nodesize bytes.
func leafSplit(sizes []int, nodesize int) ([]int, error) {
	room := nodesize - headerSize
	var counts []int
	used, n := 0, 0
	for i, s := range sizes {
		need := itemSize + s
		if need > room {
			return nil, fmt.Errorf("item %d is %d bytes, more than a %d-byte leaf holds", i, s, nodesize)
		}
		if used+need > room {
			counts = append(counts, n)
			used, n = 0, 0
		}
		used += need
		n++
	}
	// An empty tree is one empty leaf.
	return append(counts, n), nil
}

func ptrsPerNode(nodesize int) int { return (nodesize - headerSize) / keyPtrSize }

// blocksFor counts the blocks of a tree with nleaves leaves.
func blocksFor(nleaves, nodesize int) int {
	total := nleaves
	for n := nleaves; n > 1; {
		n = (n + ptrsPerNode(nodesize) - 1) / ptrsPerNode(nodesize)
		total += n
	}
	return total
}

// buildTree packs sorted items into leaves and nodes. Addresses and
// headers are filled in by finish once every block has an address.
func buildTree(owner uint64, items []item, nodesize int) (*btree, error) {
	sizes := make([]int, len(items))
	for i, it := range items {
		sizes[i] = len(it.data)
		if i > 0 && !items[i-1].key.less(it.key) {
			return nil, fmt.Errorf("tree %d: keys out of order at item %d (%v after %v)", int64(owner), i, it.key, items[i-1].key)
		}
	}
	counts, err := leafSplit(sizes, nodesize)
	if err != nil {
		return nil, fmt.Errorf("tree %d: %w", int64(owner), err)
	}
	t := &btree{owner: owner}
	var level []*block
	i := 0
	for _, n := range counts {
		b := &block{buf: make([]byte, nodesize), nitems: n}
		end := nodesize - headerSize // data offsets count from the header's end
		for j := 0; j < n; j++ {
			it := items[i+j]
			end -= len(it.data)
			copy(b.buf[headerSize+end:], it.data)
			h := b.buf[headerSize+j*itemSize:]
			it.key.put(h)
			le.PutUint32(h[17:], uint32(end))
			le.PutUint32(h[21:], uint32(len(it.data)))
		}
		if n > 0 {
			b.first = items[i].key
		}
		i += n
		level = append(level, b)
	}
	t.blocks = append(t.blocks, level...)
	per := ptrsPerNode(nodesize)
	for lv := uint8(1); len(level) > 1; lv++ {
		var up []*block
		for s := 0; s < len(level); s += per {
			e := min(s+per, len(level))
			b := &block{buf: make([]byte, nodesize), level: lv, nitems: e - s, first: level[s].first, children: level[s:e]}
			up = append(up, b)
		}
		t.blocks = append(t.blocks, up...)
		level = up
	}
	return t, nil
}

// headerInfo is what every block header carries besides its own data.
type headerInfo struct {
	fsid, chunkUUID [16]byte
}

// finish writes headers, key pointers and checksums. Every block (and
// every child) must have its address.
func (t *btree) finish(h headerInfo) {
	for _, b := range t.blocks {
		for j, c := range b.children {
			p := b.buf[headerSize+j*keyPtrSize:]
			c.first.put(p)
			le.PutUint64(p[17:], c.addr)
			le.PutUint64(p[25:], generation)
		}
		buf := b.buf
		copy(buf[32:], h.fsid[:])
		le.PutUint64(buf[48:], b.addr)
		le.PutUint64(buf[56:], headerFlags)
		copy(buf[64:], h.chunkUUID[:])
		le.PutUint64(buf[80:], generation)
		le.PutUint64(buf[88:], t.owner)
		le.PutUint32(buf[96:], uint32(b.nitems))
		buf[100] = b.level
		le.PutUint32(buf[0:], crc32.Checksum(buf[32:], castagnoli))
	}
}
