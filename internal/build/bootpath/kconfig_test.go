package bootpath

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/cachedir"

	"github.com/mkimage/mkimage/internal/build/kbuild"
	"github.com/mkimage/mkimage/internal/build/kbuild/kbuildtest"
	"github.com/mkimage/mkimage/internal/testenv"
)

func TestKconfigSymbolTree(t *testing.T) {
	src := t.TempDir()
	write := func(p, s string) {
		p = filepath.Join(src, p)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("drivers/regulator/Makefile", "obj-$(CONFIG_REGULATOR) += core.o\nobj-$(CONFIG_REGULATOR_FIXED_VOLTAGE) += \\\n\tfixed.o\n")
	write("drivers/gpio/quirks.c", `static const char *q[] = { "regulator-fixed" };`)
	write("drivers/gpio/Makefile", "obj-$(CONFIG_OF_GPIO) += quirks.o\n")
	write("drivers/regulator/fixed.c", `static const struct of_device_id m[] = { { .compatible = "regulator-fixed" }, {} };`)
	write("drivers/net/Makefile", "obj-$(CONFIG_DWMAC_MESON) += dwmac-meson.o\ndwmac-meson-objs := meson-glue.o meson-clk.o\n")
	write("drivers/net/meson-glue.c", `{ .compatible = "amlogic,meson-gxbb-dwmac" },`)
	write("drivers/misc/lonely.c", `{ .compatible = "vendor,orphan" }`)
	write("drivers/clk/Makefile", "obj-y += clk-fixed.o\n")
	write("drivers/clk/clk-fixed.c", `CLK_OF_DECLARE(fixed_clk, "fixed-clock", of_fixed_clk_setup);`)
	c := &Closure{Rows: []Row{{Path: "/reg", Compatible: []string{"vendor,reg", "regulator-fixed"}, Kind: Missing}, {Path: "/ok", Compatible: []string{"vendor,orphan"}, Kind: Builtin}}}
	c.NameSymbols(src)
	if c.Rows[0].Kconfig != "REGULATOR_FIXED_VOLTAGE" || c.Rows[1].Kconfig != "" {
		t.Errorf("NameSymbols: %+v", c.Rows)
	}
	if err := c.Err(); err == nil || !strings.Contains(err.Error(), "enable CONFIG_REGULATOR_FIXED_VOLTAGE") {
		t.Errorf("Err() does not say what to enable: %v", err)
	}
	for _, tt := range []struct{ compat, sym, file, err string }{
		{compat: "regulator-fixed", sym: "REGULATOR_FIXED_VOLTAGE", file: "drivers/regulator/fixed.c"},
		{compat: "amlogic,meson-gxbb-dwmac", sym: "DWMAC_MESON", file: "drivers/net/meson-glue.c"},
		{compat: "vendor,orphan", err: `no driver source`},
		{compat: "regulator", err: `no driver source`}, // a prefix is not the string
	} {
		sym, file, err := KconfigSymbol(src, tt.compat)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: error %v, want %q", tt.compat, err, tt.err)
			}
			continue
		}
		if err != nil || sym != tt.sym || file != tt.file {
			t.Errorf("%s: %s %s %v, want %s %s", tt.compat, sym, file, err, tt.sym, tt.file)
		}
	}
}

// TestKconfigSymbolLinux asks Debian's linux-source-6.1 for the symbols of
// drivers the boards' boot paths need.
func TestKconfigSymbolLinux(t *testing.T) {
	testenv.Short(t)
	testenv.NeedFile(t, kbuildtest.Source)
	cache := cachedir.Dir("kernel")
	src, err := kbuild.OpenSource(kbuildtest.Source, cache, nil)
	if err != nil {
		t.Fatal(err)
	}
	for compat, want := range map[string]string{
		"regulator-fixed":      "REGULATOR_FIXED_VOLTAGE",
		"regulator-gpio":       "REGULATOR_GPIO",
		"amlogic,meson-gx-mmc": "MMC_MESON_GX",
		"marvell,orion-mdio":   "MVMDIO",
		"sff,sfp":              "SFP",
		"nxp,pca9548":          "I2C_MUX_PCA954x",
	} {
		sym, file, err := KconfigSymbol(src.Dir, compat)
		if err != nil || sym != want {
			t.Errorf("%s: %s (%s) %v, want %s", compat, sym, file, err, want)
		}
	}
}
