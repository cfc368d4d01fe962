package apply

import (
	"testing"

	"github.com/mkimage/mkimage/internal/testenv"
)

// TestDeps: the package is node-side (it runs on the node, from its
// booted root): it links the node's packages, the formats both sides
// share and golang.org/x/sys, never build or server code. The test may
// import internal/build/bundle to make real bundles; the package may not.
func TestDeps(t *testing.T) {
	testenv.OnlyDeps(t, "",
		"github.com/mkimage/mkimage/internal/node/",
		"github.com/mkimage/mkimage/internal/update",
		"github.com/mkimage/mkimage/internal/update/registry",
		"github.com/mkimage/mkimage/internal/bootstate",
		"github.com/mkimage/mkimage/internal/atomicfile",
		"github.com/mkimage/mkimage/internal/filehash",
		// netfetch's and rootdev's own, in nodeinit's allow-list too.
		"github.com/mkimage/mkimage/internal/bmap",
		"github.com/mkimage/mkimage/internal/ondisk",
		"golang.org/x/sys/",
	)
}
