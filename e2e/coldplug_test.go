package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/testenv"
)

// TestColdplugRegulator: QEMU's own device tree for the machine, dumped
// by `mkimage qemu --dump-dtb` and given an extra regulator-fixed node,
// boots through U-Boot with `mkimage qemu --dtb`. The image carries
// Debian's fixed.ko for coldplug (--coldplug fixed): nodeinit loads it
// for the node's modalias and the regulator is bound under
// /sys/class/regulator before the root is mounted, as a real board's SD
// supply must be.
func TestColdplugRegulator(t *testing.T) {
	needQEMU(t)
	testenv.NeedTools(t, "dtc")
	dir := t.TempDir()
	img := filepath.Join(dir, "virt.img")
	mustRun(t, "--board", "qemu-virt", "--rootfs", "minimal", "--coldplug", "fixed", "-o", img, "-q")

	qemuDTB := filepath.Join(dir, "qemu.dtb")
	mustRun(t, "qemu", img, "--dump-dtb", qemuDTB, "-q")
	dts := tool(t, "dtc", "-q", "-I", "dtb", "-O", "dts", qemuDTB)
	const node = `
	regulator-test {
		compatible = "regulator-fixed";
		regulator-name = "test-3v3";
		regulator-min-microvolt = <3300000>;
		regulator-max-microvolt = <3300000>;
		regulator-always-on;
	};
`
	// The node goes last in the root node: before its closing "};".
	end := strings.LastIndex(dts, "};")
	if end < 0 {
		t.Fatalf("dtc output has no root node:\n%s", dts)
	}
	src := filepath.Join(dir, "regulator.dts")
	if err := os.WriteFile(src, []byte(dts[:end]+node+dts[end:]), 0o644); err != nil {
		t.Fatal(err)
	}
	dtb := filepath.Join(dir, "regulator.dtb")
	tool(t, "dtc", "-q", "-I", "dts", "-O", "dtb", "-o", dtb, src)

	log := qemu(t, img, "nodeinit: mounted", "--dtb", dtb)
	mounted := strings.Index(log, "nodeinit: mounted")
	for _, want := range []string{
		"Booting using the fdt blob", // U-Boot handed a device tree on
		"nodeinit: coldplug: loaded fixed for of:Nregulator-testT(null)Cregulator-fixed",
		"=test-3v3", // in "nodeinit: coldplug: regulators: ..."
		"nodeinit: coldplug: loaded virtio_blk for virtio:d00000002v",
	} {
		i := strings.Index(log, want)
		switch {
		case i < 0:
			t.Errorf("console lacks %q", want)
		case i > mounted:
			t.Errorf("%q only after the root was mounted", want)
		}
	}
	if t.Failed() {
		t.Logf("console:\n%s", tail(log, 60))
	}
}
