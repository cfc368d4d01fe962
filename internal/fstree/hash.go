package fstree

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
)

// Hash returns a sha256 over everything a filesystem writer would store:
// names, types, owners, modes, times, xattrs, device numbers, link
// structure and content. Equal trees give equal hashes; it serves as the
// identity of directory inputs in manifests and as the seed of ids derived
// from a tree.
func (t *Tree) Hash() (string, error) {
	h := sha256.New()
	ids := map[*Inode]uint64{}
	num := func(v uint64) { binary.Write(h, binary.LittleEndian, v) }
	str := func(s string) { num(uint64(len(s))); io.WriteString(h, s) }
	err := t.Walk(func(p string, n *Inode) error {
		str(p)
		if id, ok := ids[n]; ok {
			// A further name of an inode already hashed.
			num(1)
			num(id)
			return nil
		}
		num(0)
		ids[n] = uint64(len(ids))
		num(uint64(n.Mode))
		num(uint64(n.Uid))
		num(uint64(n.Gid))
		for _, tm := range []int64{n.Atime.UnixNano(), n.Mtime.UnixNano(), n.Ctime.UnixNano()} {
			num(uint64(tm))
		}
		keys := make([]string, 0, len(n.Xattrs))
		for k := range n.Xattrs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		num(uint64(len(keys)))
		for _, k := range keys {
			str(k)
			str(string(n.Xattrs[k]))
		}
		switch n.Type() {
		case ModeSymlink:
			str(n.Target)
		case ModeChar, ModeBlock:
			num(uint64(n.Major))
			num(uint64(n.Minor))
		case ModeRegular:
			num(uint64(n.Size()))
			if n.Content == nil {
				return nil
			}
			if s, ok := n.Content.(Sparse); ok {
				for _, e := range s.Extents() {
					num(uint64(e.Offset))
					num(uint64(e.Length))
				}
			}
			r, err := n.Content.Open()
			if err != nil {
				return fmt.Errorf("/%s: %w", p, err)
			}
			_, err = io.Copy(h, r)
			r.Close()
			if err != nil {
				return fmt.Errorf("/%s: %w", p, err)
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
