package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/mkimage/mkimage/internal/testenv"
)

// nodeSide are the project's packages nodeinit may link: the node's own,
// the cluster model and the formats both sides read. Anything else is
// build or server code that has no place in a small arm64 PID 1.
var nodeSide = []string{
	"github.com/mkimage/mkimage/cmd/nodeinit",
	"github.com/mkimage/mkimage/internal/node/",
	"github.com/mkimage/mkimage/internal/cluster/plan",
	"github.com/mkimage/mkimage/internal/ondisk",
	"github.com/mkimage/mkimage/internal/atomicfile",
	"github.com/mkimage/mkimage/internal/bootstate",
	"github.com/mkimage/mkimage/internal/bmap",
	"github.com/mkimage/mkimage/internal/modalias",
	// The update command's: bundle manifests and signatures, payload sums.
	"github.com/mkimage/mkimage/internal/update",
	// Bundles in an OCI registry (nodeinit update apply oci://...).
	"github.com/mkimage/mkimage/internal/update/registry",
	"github.com/mkimage/mkimage/internal/filehash",
	// i2pd destination keys made on the node (standard library only).
	"github.com/mkimage/mkimage/internal/i2p",
	// Remote shell words: backup's commands on the target (standard
	// library only; the build host's container move quotes with it too).
	"github.com/mkimage/mkimage/internal/shquote",
}

// TestNodeSideOnly: `go list -deps ./cmd/nodeinit` names no build-side
// package ("nodeinit never imports the builder" is checked, not a comment).
func TestNodeSideOnly(t *testing.T) {
	testenv.OnlyDeps(t, "github.com/mkimage/mkimage", nodeSide...)
}

// sizeBudget is what nodeinit's arm64 binary may weigh: it is in every
// initramfs, which U-Boot loads from the card or over TFTP on every boot.
const sizeBudget = 14 << 20

func TestSizeBudget(t *testing.T) {
	testenv.Short(t)
	testenv.NeedTools(t, "go")
	bin := filepath.Join(t.TempDir(), "nodeinit")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	st, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("nodeinit (linux/arm64): %d bytes, budget %d", st.Size(), sizeBudget)
	if st.Size() > sizeBudget {
		t.Errorf("nodeinit is %d bytes, over its %d-byte budget", st.Size(), sizeBudget)
	}
}
