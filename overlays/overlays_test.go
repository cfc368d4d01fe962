package overlays

import (
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/fstree"
)

func TestCommonHasFstab(t *testing.T) {
	trees, err := For("qemu-virt", time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if len(trees) == 0 {
		t.Fatal("no common overlay")
	}
	n, ok := trees[0].Lookup("etc/fstab")
	if !ok || n.Mode != fstree.ModeRegular|0o644 || n.Uid != 0 {
		t.Fatalf("etc/fstab: %+v", n)
	}
	if _, ok := trees[0].Lookup("README.md"); ok {
		t.Fatal("README.md of the overlays dir leaked into the root")
	}
}
