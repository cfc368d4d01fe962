package debroot

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/mkimage/mkimage/internal/cachedir"

	"github.com/mkimage/mkimage/internal/build/apt"
	"github.com/mkimage/mkimage/internal/testenv"
)

// TestRealIndex resolves the node's package set from Debian's real apt
// lists, in the builder's cache (updated there when missing or old).
func TestRealIndex(t *testing.T) {
	c := &apt.Cache{Dir: filepath.Join(cachedir.Root(), "apt"), Arch: "arm64"}
	if err := c.Update(context.Background()); err != nil {
		testenv.Missing(t, "apt lists: "+err.Error())
	}
	files, err := ListFiles(filepath.Join(c.Dir, "lists"), "bookworm", "arm64")
	if err != nil {
		t.Fatal(err)
	}
	ix, err := LoadIndex(files...)
	if err != nil {
		t.Fatal(err)
	}
	names := append(BaseNames(ix, "arm64"), NodePackages...)
	pkgs, err := Resolve(ix, "arm64", names...)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) < 100 {
		t.Errorf("only %d packages", len(pkgs))
	}
	for _, p := range pkgs {
		t.Logf("%s %s %s", p.Name, p.Version, p.Priority)
	}
}
