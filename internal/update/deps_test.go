package update

import (
	"testing"

	"github.com/mkimage/mkimage/internal/testenv"
)

// TestDeps: the package links the standard library, atomicfile (with
// x/sys/unix) and bootstate only,
// so nodeinit (held to node-side packages and a size budget by
// cmd/nodeinit/deps_test.go) can verify bundles with it.
func TestDeps(t *testing.T) {
	testenv.OnlyDeps(t, "",
		"github.com/mkimage/mkimage/internal/update", "github.com/mkimage/mkimage/internal/atomicfile",
		"github.com/mkimage/mkimage/internal/bootstate", "golang.org/x/sys/unix") // atomicfile's lock
}
