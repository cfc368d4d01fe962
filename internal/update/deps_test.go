package update

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/testenv"
)

// TestDeps: the package links the standard library, atomicfile (with
// x/sys/unix) and bootstate only,
// so nodeinit (held to node-side packages and a size budget by
// cmd/nodeinit/deps_test.go) can verify bundles with it.
func TestDeps(t *testing.T) {
	testenv.NeedTools(t, "go")
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range strings.Fields(string(out)) {
		switch p {
		case "github.com/mkimage/mkimage/internal/update", "github.com/mkimage/mkimage/internal/atomicfile", "github.com/mkimage/mkimage/internal/bootstate",
			"golang.org/x/sys/unix": // atomicfile's lock
		default:
			t.Errorf("internal/update links %s", p)
		}
	}
}
