package btrfs

import (
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/fstree"
)

func TestSmoke(t *testing.T) {
	ts := time.Unix(1700000000, 123456789)
	tr := fstree.New(ts)
	tr.Put("small.txt", fstree.NewFile(0o644, []byte("hello world\n"), ts))
	for _, o := range []Options{{Metadata: Single}, {}} {
		img, res := writeImage(t, tr, o)
		t.Logf("%s size %d used %d", img, res.Size, res.Used)
		btrfsCheck(t, img)
		dir := mount(t, img, false)
		compareTree(t, dir, tr, nil)
	}
}
