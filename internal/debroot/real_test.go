package debroot

import (
	"os"
	"path/filepath"
	"testing"
)

// TestRealIndex resolves the node's package set from the apt lists a
// build left in the cache (skipped without them).
func TestRealIndex(t *testing.T) {
	home, _ := os.UserHomeDir()
	dir := filepath.Join(home, ".cache/mkimage/apt/lists")
	files, err := ListFiles(dir, "bookworm", "arm64")
	if err != nil {
		t.Skip(err)
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
