package registry

import (
	"testing"

	"github.com/mkimage/mkimage/internal/testenv"
)

// TestDeps: the node's update command links this package, so it links
// what package update does and update itself, no registry library.
func TestDeps(t *testing.T) {
	testenv.OnlyDeps(t, "",
		"github.com/mkimage/mkimage/internal/update", "github.com/mkimage/mkimage/internal/atomicfile",
		"github.com/mkimage/mkimage/internal/bootstate", "golang.org/x/sys/unix",
		"github.com/mkimage/mkimage/internal/update/registry")
}
