package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/testenv"
)

// TestFlashBuiltImage flashes a built image's .zst to several card
// stand-ins at once, as a user would after `mkimage --compress zst`: every
// target verifies and equals the image.
func TestFlashBuiltImage(t *testing.T) {
	testenv.Short(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "node.img")
	mustRun(t, "--board", "qemu-virt", "--rootfs", testRoot(t, dir), "-o", img, "-q", "--compress", "zst")
	var targets []string
	for _, n := range []string{"card1", "card2", "card3", "card4"} {
		targets = append(targets, filepath.Join(dir, n))
	}
	// The .bmap beside node.img serves node.img.zst too.
	out := mustRun(t, append([]string{"flash", img + ".zst"}, targets...)...)
	if strings.Count(out, "verified") < len(targets) {
		t.Fatalf("flash table does not show every card verified:\n%s", out)
	}
	want := sha(t, img)
	for _, tg := range targets {
		if got := sha(t, tg); got != want {
			t.Errorf("%s: sha256 %s, image %s", tg, got, want)
		}
	}
}
