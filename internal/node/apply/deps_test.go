package apply

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/testenv"
)

// TestDeps: the package is node-side (it runs on the node, from its
// booted root): it links the node's packages, the formats both sides
// share and golang.org/x/sys, never build or server code. The test may
// import internal/build/bundle to make real bundles; the package may not.
func TestDeps(t *testing.T) {
	testenv.NeedTools(t, "go")
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	allowed := []string{
		"github.com/mkimage/mkimage/internal/node/",
		"github.com/mkimage/mkimage/internal/update",
		"github.com/mkimage/mkimage/internal/bootstate",
		"github.com/mkimage/mkimage/internal/atomicfile",
		// netfetch's and rootdev's own, in nodeinit's allow-list too.
		"github.com/mkimage/mkimage/internal/bmap",
		"github.com/mkimage/mkimage/internal/ondisk",
		"golang.org/x/sys/",
	}
	for _, p := range strings.Fields(string(out)) {
		ok := false
		for _, a := range allowed {
			if p == a || strings.HasSuffix(a, "/") && strings.HasPrefix(p, a) {
				ok = true
			}
		}
		if !ok {
			t.Errorf("internal/node/apply links %s, which is not node-side", p)
		}
	}
}
