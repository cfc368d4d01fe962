package bootpath

import (
	"encoding/binary"
	"os/exec"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/build/devicetree"
	"github.com/mkimage/mkimage/internal/modalias"
	"github.com/mkimage/mkimage/internal/testenv"
)

// table is a kernel described by hand: compatible → module, or built in.
type table struct {
	modules map[string]string
	builtin map[string]bool
}

// Modules matches module aliases the way the kernel writes them for
// of_device_id tables: "of:N*T*C<compatible>" and "...C<compatible>C*".
func (k table) Modules(dev string) ([]string, error) {
	var out []string
	for c, m := range k.modules {
		for _, pat := range []string{"of:N*T*C" + c, "of:N*T*C" + c + "C*"} {
			if modalias.Match(pat, dev) {
				out = append(out, m)
				break
			}
		}
	}
	return out, nil
}

func (k table) Builtin(c string) bool { return k.builtin[c] }

func parse(t *testing.T) *devicetree.Tree {
	t.Helper()
	testenv.NeedTools(t, "dtc")
	out, err := exec.Command("dtc", "-q", "-I", "dts", "-O", "dtb", "testdata/board.dts").Output()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := devicetree.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

var kernel = table{
	modules: map[string]string{"test,sd-mmc": "sd_mmc", "test,generic-mmc": "generic_mmc", "regulator-fixed": "fixed",
		"regulator-gpio": "gpio_regulator", "test,eth": "eth_test", "snps,dwmac": "dwmac_generic", "test,pwrc": "pwrc"},
	builtin: map[string]bool{"simple-bus": true, "arm,gic-400": true, "test,clkc": true, "test,pinctrl": true},
}

func TestWalk(t *testing.T) {
	tr := parse(t)
	for _, tt := range []struct {
		name     string
		devices  []string
		rows     map[string]string // path → "kind drivers via"
		modules  string
		problems string
	}{
		{
			name:    "SD slot: supplies, their supplies, GPIO bank and pin group go to their controllers",
			devices: []string{"alias:mmc0"},
			rows: map[string]string{
				"/soc/mmc@1000":                 "module sd_mmc boot device", // the most specific compatible wins over generic_mmc
				"/soc":                          "built-in  parent of /soc/mmc@1000",
				"/soc/interrupt-controller@100": "built-in  interrupt-parent of /soc", // /soc names it for its children
				"/soc/clock-controller@200":     "built-in  clocks of /soc/mmc@1000",
				"/soc/pinctrl@300":              "built-in  pinctrl-0 of /soc/mmc@1000",
				"/regulator-vdd":                "module fixed vmmc-supply of /soc/mmc@1000",
				"/regulator-main":               "module fixed vin-supply of /regulator-vdd",
				"/gpio-regulator-io":            "module gpio_regulator vqmmc-supply of /soc/mmc@1000",
			},
			modules: "fixed gpio_regulator sd_mmc",
		},
		{
			name:    "ethernet: MDIO child is the MAC driver's, a disabled power domain stops it",
			devices: []string{"/soc/ethernet@3000"},
			rows: map[string]string{
				"/soc/ethernet@3000":         "module eth_test boot device",
				"/soc/ethernet@3000/mdio":    "framework  phy-handle of /soc/ethernet@3000",
				"/soc/power-controller@4000": "disabled  power-domains of /soc/ethernet@3000",
			},
			modules:  "eth_test",
			problems: "/soc/power-controller@4000",
		},
		{
			name:     "a controller with no driver anywhere",
			devices:  []string{"compatible:test,unknown-mmc"},
			rows:     map[string]string{"/soc/emmc@5000": "missing  boot device", "/regulator-vdd": "module fixed vmmc-supply of /soc/emmc@5000"},
			modules:  "fixed",
			problems: "/soc/emmc@5000",
		},
		{
			name:    "compatible: selects only the enabled instances",
			devices: []string{"compatible:test,sd-mmc"},
			rows:    map[string]string{"/soc/mmc@1000": "module sd_mmc boot device"},
			modules: "fixed gpio_regulator sd_mmc",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Walk(tr, tt.devices, kernel)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, r := range c.Rows {
				got[r.Path] = strings.Join([]string{string(r.Kind), strings.Join(r.Modules, ","), r.Via}, " ")
			}
			for p, want := range tt.rows {
				if got[p] != want {
					t.Errorf("%s: %q, want %q", p, got[p], want)
				}
			}
			if _, ok := got["/soc/mmc@2000"]; ok {
				t.Error("the disabled mmc@2000 is on the boot path")
			}
			if m := strings.Join(c.Modules(), " "); m != tt.modules {
				t.Errorf("modules %q, want %q", m, tt.modules)
			}
			var probs []string
			for _, r := range c.Problems() {
				probs = append(probs, r.Path)
			}
			if strings.Join(probs, " ") != tt.problems {
				t.Errorf("problems %v, want %q", probs, tt.problems)
			}
			if err := c.Err(); (err != nil) != (tt.problems != "") {
				t.Errorf("Err() = %v", err)
			} else if err != nil && !strings.Contains(err.Error(), tt.problems) {
				t.Errorf("Err() does not name %s: %v", tt.problems, err)
			}
		})
	}
	if _, err := Walk(tr, []string{"alias:mmc7"}, kernel); err == nil || !strings.Contains(err.Error(), `boot device alias:mmc7: no alias "mmc7"`) {
		t.Errorf("unknown boot device: %v", err)
	}
}

// TestDriven: the enabled devices a module drives, by the same rule as
// the walk (board data such as the watchdog is checked with it).
func TestDriven(t *testing.T) {
	tr := parse(t)
	for module, want := range map[string]string{
		"sd_mmc":      "/soc/mmc@1000",                  // mmc@2000 is disabled
		"generic-mmc": "",                               // the more specific sd_mmc drives mmc@1000
		"fixed":       "/regulator-vdd /regulator-main", // in tree order
		"wdt_none":    "",
	} {
		var got []string
		for _, r := range Driven(tr, module, kernel) {
			got = append(got, r.Path)
		}
		if strings.Join(got, " ") != want {
			t.Errorf("Driven(%s) = %v, want %q", module, got, want)
		}
	}
}

func TestModalias(t *testing.T) {
	tr := parse(t)
	n, _ := tr.ByPath("/soc/mmc@1000")
	if got := deviceModalias(n, tr, tr.Compatible(n)); got != "of:NmmcT(null)Ctest,sd-mmcCtest,generic-mmc" {
		t.Errorf("modalias %q", got)
	}
}

// TestImageBuiltin: an of_device_id entry (name[32], type[32],
// compatible[128], data) is found; the same string as a plain literal is
// not.
func TestImageBuiltin(t *testing.T) {
	img := make([]byte, 4096)
	entry := func(at int, name, typ, compat string) {
		copy(img[at:], name)
		copy(img[at+32:], typ)
		copy(img[at+64:], compat)
		binary.LittleEndian.PutUint64(img[at+192:], 0xffff800008001234)
	}
	entry(1024, "", "", "vendor,clk")
	entry(1024+200, "", "", "vendor,pinctrl")
	copy(img[3001:], "vendor,literal\x00other string\x00")
	copy(img[3500:], "vendor,unaligned")
	ib := &ImageBuiltin{Image: img}
	for c, want := range map[string]bool{"vendor,clk": true, "vendor,pinctrl": true, "vendor,literal": false, "vendor,unaligned": false, "vendor": false, "": false} {
		if got := ib.Builtin(c); got != want {
			t.Errorf("Builtin(%q) = %v, want %v", c, got, want)
		}
	}
}
