package bootpath

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/build/devicetree"
	"github.com/mkimage/mkimage/internal/testenv"
)

// cyclicDTS has suppliers that reference each other in a ring (a clock
// controller and a reset controller naming one another, a regulator
// that is its own supply, an interrupt controller that is its own
// interrupt parent): a DTB may say anything, and the walk must visit
// each node once and stop.
const cyclicDTS = `/dts-v1/;
/ {
	#address-cells = <1>;
	#size-cells = <1>;
	interrupt-parent = <&gic>;
	gic: interrupt-controller@0 {
		compatible = "arm,gic-400";
		reg = <0 0x100>;
		#interrupt-cells = <3>;
		interrupt-controller;
		interrupt-parent = <&gic>;
		interrupts = <1 9 4>;
	};
	clkc: clock-controller@100 {
		compatible = "test,clkc";
		reg = <0x100 0x100>;
		#clock-cells = <1>;
		resets = <&rst 1>;
	};
	rst: reset-controller@200 {
		compatible = "test,rst";
		reg = <0x200 0x100>;
		#reset-cells = <1>;
		clocks = <&clkc 2>;
	};
	vcc: regulator {
		compatible = "regulator-fixed";
		vin-supply = <&vcc>;
	};
	sd: mmc@300 {
		compatible = "test,sd-mmc";
		reg = <0x300 0x100>;
		clocks = <&clkc 1>, <&clkc 1>;
		resets = <&rst 0>;
		vmmc-supply = <&vcc>;
		interrupts = <0 5 4>;
	};
};
`

func TestWalkCycles(t *testing.T) {
	testenv.NeedTools(t, "dtc")
	src := filepath.Join(t.TempDir(), "cyclic.dts")
	if err := os.WriteFile(src, []byte(cyclicDTS), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("dtc", "-q", "-I", "dts", "-O", "dtb", src).Output()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := devicetree.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Walk(tr, []string{"/mmc@300"}, kernel)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, r := range c.Rows {
		seen[r.Path]++
	}
	for _, p := range []string{"/mmc@300", "/clock-controller@100", "/reset-controller@200", "/regulator", "/interrupt-controller@0"} {
		if seen[p] != 1 {
			t.Errorf("%s: %d rows, want 1 (rows %v)", p, seen[p], c.Rows)
		}
	}
	if len(c.Rows) != 5 {
		t.Errorf("%d rows, want 5: %v", len(c.Rows), c.Rows)
	}
}

// FuzzWalk: any DTB the parser accepts may be walked from any of its
// nodes without a panic or a node listed twice.
func FuzzWalk(f *testing.F) {
	cmd := exec.Command("dtc", "-q", "-I", "dts", "-O", "dtb", "-")
	cmd.Stdin = strings.NewReader(cyclicDTS)
	if out, err := cmd.Output(); err == nil {
		f.Add(out, "/mmc@300")
	}
	if raw, err := exec.Command("dtc", "-q", "-I", "dts", "-O", "dtb", "testdata/board.dts").Output(); err == nil {
		f.Add(raw, "compatible:test,sd-mmc")
	}
	for _, p := range testenv.CacheFiles("kernels/*/dtbs/amlogic/meson-gxbb-odroidc2.dtb") {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b, "/soc/sd@72000")
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, sel string) {
		tr, err := devicetree.Parse(b)
		if err != nil {
			return
		}
		c, err := Walk(tr, []string{sel}, kernel)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, r := range c.Rows {
			if seen[r.Path] {
				t.Fatalf("%s listed twice", r.Path)
			}
			seen[r.Path] = true
		}
	})
}
