package btrfs

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/fstree/fstreetest"
)

// fuzzTree turns bytes into a tree and options: each 3-byte op adds an
// entry of some kind under some directory.
func fuzzTree(data []byte) (*fstree.Tree, Options) {
	tr := fstree.New(epoch)
	var o Options
	if len(data) > 0 {
		flags := data[0]
		data = data[1:]
		if flags&1 != 0 {
			o.Metadata = Single
		}
		if flags&2 != 0 {
			o.RootSubvolume = "@"
		}
		if flags&4 != 0 {
			o.Subvolumes = []string{"sv", "d0/sv"}
		}
		if flags&8 != 0 {
			o.NodeSize = 4096
		}
		if flags&16 != 0 && o.Subvolumes != nil {
			o.Received = map[string]Received{"d0/sv": {UUID: [16]byte{flags}, Transid: uint64(flags)}}
		}
	}
	dirs := []*fstree.Inode{tr.Root}
	var files []*fstree.Inode
	var last *fstree.Inode
	for i := 0; len(data) >= 3; i++ {
		op, a, b := data[0], data[1], data[2]
		data = data[3:]
		parent := dirs[int(a)%len(dirs)]
		name := fmt.Sprintf("e%d", i)
		if op&0x80 != 0 && len(data) > 0 {
			n := min(int(b)%64+1, len(data))
			name = strings.Map(func(r rune) rune {
				if r == '/' || r == 0 {
					return '_'
				}
				return r
			}, string(data[:n]))
			data = data[n:]
			if name == "." || name == ".." || len(name) > 255 || name == "" {
				name = fmt.Sprintf("x%d", i)
			}
		}
		t := ts(int(a) + int(b)<<8)
		var n *fstree.Inode
		switch op & 7 {
		case 0:
			n = &fstree.Inode{Mode: fstree.ModeRegular | uint32(b)<<4&0o7777, Content: fstreetest.Random(uint64(i), int64(a)*int64(b)*3), Atime: t, Mtime: t, Ctime: t}
			files = append(files, n)
		case 1:
			n = fstree.NewDir(uint32(a)&0o7777, t)
			dirs = append(dirs, n)
		case 2:
			n = fstree.NewSymlink(strings.Repeat("s", int(a)*int(b)%5000+1), t)
		case 3:
			if len(files) > 0 {
				n = files[int(b)%len(files)]
			}
		case 4:
			n = &fstree.Inode{Mode: fstree.ModeChar | 0o600, Major: uint32(a), Minor: uint32(b) * 1000, Uid: uint32(a), Gid: uint32(b)}
		case 5:
			n = &fstree.Inode{Mode: fstree.ModeFIFO | 0o644, Atime: t, Mtime: t, Ctime: t}
		case 6:
			if last != nil {
				if last.Xattrs == nil {
					last.Xattrs = map[string][]byte{}
				}
				last.Xattrs[fmt.Sprintf("user.%d", b)] = make([]byte, int(a)*20)
			}
		case 7:
			size := int64(a)*100000 + int64(b)
			var ext []fstree.Extent
			for off := int64(b) * 3; off < size; off += int64(a)*9000 + 5000 {
				ext = append(ext, fstree.Extent{Offset: off, Length: min(int64(b)*50+1, size-off)})
			}
			n = &fstree.Inode{Mode: fstree.ModeRegular | 0o644, Content: fstreetest.Sparse(size, 0, ext...), Mtime: t}
		}
		if n != nil {
			parent.Children[name] = n
			last = n
		}
	}
	// A directory added as a child of itself (or an ancestor) would make
	// a cycle; fuzz ops only add fresh directories, so none can occur.
	return tr, o
}

var fuzzSeeds = [][]byte{
	{},
	{0, 0, 1, 2, 1, 3, 4, 0, 5, 6},
	{1, 1, 0, 0, 0, 9, 9, 2, 200, 17, 3, 0, 0, 4, 1, 1, 5, 2, 2, 6, 40, 1},
	{2, 1, 0, 0, 0, 0, 255, 255, 7, 200, 99, 0x86, 5, 5, 'a', 'b', 'c', 'd', 'e'},
	{6, 1, 1, 1, 1, 1, 2, 0, 2, 40, 0, 1, 200, 3, 1, 7, 2, 1, 7, 99, 255},
	{1, 1, 2, 3, 0, 1, 30, 0, 1, 31, 3, 2, 2, 3, 2, 3, 3, 2, 4, 6, 255, 1, 6, 200, 2, 0x81, 3, 4, 'x', '/', 'y', 0},
	{15, 7, 255, 255, 7, 0, 0, 2, 255, 255, 1, 0, 0, 0, 3, 70, 0, 2, 70},
	{22, 1, 0, 0, 0, 9, 9, 2, 200, 17, 3, 0, 0, 4, 1, 1, 5, 2, 2, 6, 40, 1},
}

func FuzzWrite(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, o := fuzzTree(data)
		if _, err := Write(discard{}, tr, o); err != nil {
			// Errors are fine for trees btrfs cannot hold; they must
			// name what is wrong.
			if err.Error() == "" {
				t.Fatal("empty error")
			}
		}
	})
}

// TestFuzzSeedsCheck runs the fuzz seed trees through btrfs check and a
// mount.
func TestFuzzSeedsCheck(t *testing.T) {
	for i, s := range fuzzSeeds {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			tr, o := fuzzTree(s)
			img, _ := writeImage(t, tr, o)
			btrfsCheck(t, img)
		})
	}
}
