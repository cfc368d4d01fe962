package bootpath

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/mkimage/mkimage/internal/build/devicetree"
)

// cellsProps are the supplier lists of phandle + arguments, with the
// provider property that says how many argument cells follow (the
// bindings fw_devlink follows in drivers/of/property.c, plus the
// assigned clocks the driver core sets before probe).
var cellsProps = map[string]string{
	"clocks":                    "#clock-cells",
	"assigned-clocks":           "#clock-cells",
	"assigned-clock-parents":    "#clock-cells",
	"resets":                    "#reset-cells",
	"power-domains":             "#power-domain-cells",
	"phys":                      "#phy-cells",
	"pwms":                      "#pwm-cells",
	"dmas":                      "#dma-cells",
	"mboxes":                    "#mbox-cells",
	"io-channels":               "#io-channel-cells",
	"interconnects":             "#interconnect-cells",
	"iommus":                    "#iommu-cells",
	"hwlocks":                   "#hwlock-cells",
	"interrupts-extended":       "#interrupt-cells",
	"msi-parent":                "#msi-cells",
	"thermal-sensors":           "#thermal-sensor-cells",
	"nvmem-cells":               "",
	"extcon":                    "",
	"leds":                      "",
	"mmc-pwrseq":                "",
	"phy-handle":                "",
	"phy":                       "",
	"sfp":                       "",
	"i2c-bus":                   "",
	"ddc-i2c-bus":               "",
	"interrupt-parent":          "",
	"wakeup-parent":             "",
	"pcs-handle":                "",
	"marvell,system-controller": "",
}

var (
	pinctrlProp = regexp.MustCompile(`^pinctrl-[0-9]+$`)
	gpioProp    = regexp.MustCompile(`^(.+-)?gpios?$`)
)

// suppliers follows every supplier reference of n.
func (w *walker) suppliers(n *devicetree.Node, path string) error {
	t := w.t
	for _, p := range n.Properties {
		name := p.Name
		var cellsName string
		switch {
		case pinctrlProp.MatchString(name):
			cellsName = ""
		case strings.HasSuffix(name, "-supply"):
			cellsName = ""
		case gpioProp.MatchString(name) && name != "nr-gpios" && !strings.HasSuffix(name, ",nr-gpios"):
			if _, hog := t.Prop(n, "gpio-hog"); hog {
				continue // a hog's gpios are pin numbers of its parent
			}
			cellsName = "#gpio-cells"
		default:
			c, ok := cellsProps[name]
			if !ok {
				continue
			}
			cellsName = c
		}
		targets, err := w.references(n, name, cellsName)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for _, s := range targets {
			if name == "iommus" && !t.Enabled(s) {
				continue // the kernel runs the device without a disabled IOMMU
			}
			if err := w.device(w.provider(s), name+" of "+path, false); err != nil {
				return err
			}
		}
	}
	// Interrupts go to the interrupt parent, inherited from ancestors.
	if _, ok := t.Prop(n, "interrupts"); ok {
		if _, own := t.Prop(n, "interrupt-parent"); !own {
			for a := t.Parent(n); a != nil; a = t.Parent(a) {
				if ph, ok := t.U32(a, "interrupt-parent"); ok {
					if ip, ok := t.ByPhandle(ph); ok {
						if err := w.device(w.provider(ip), "interrupt parent of "+path, false); err != nil {
							return err
						}
					}
					break
				}
			}
		}
	}
	return nil
}

// references parses a list of phandle + argument cells; cellsName ""
// means every cell is a phandle.
func (w *walker) references(n *devicetree.Node, name, cellsName string) ([]*devicetree.Node, error) {
	t := w.t
	cells, ok := t.Cells(n, name)
	if !ok {
		return nil, nil // not a cell list (e.g. a string property of the same name)
	}
	var out []*devicetree.Node
	for i := 0; i < len(cells); {
		ph := cells[i]
		i++
		if ph == 0 {
			continue // an empty entry (e.g. "no parent" in assigned-clock-parents)
		}
		s, ok := t.ByPhandle(ph)
		if !ok {
			return nil, fmt.Errorf("%s: phandle %#x points at no node", name, ph)
		}
		out = append(out, s)
		if cellsName == "" {
			continue
		}
		nargs, ok := t.U32(s, cellsName)
		if !ok {
			if cellsName == "#msi-cells" {
				nargs = 0 // optional
			} else {
				return nil, fmt.Errorf("%s: supplier %s has no %s", name, t.Path(s), cellsName)
			}
		}
		if nargs > 16 {
			return nil, fmt.Errorf("%s: supplier %s says %s = %d", name, t.Path(s), cellsName, nargs)
		}
		i += int(nargs)
	}
	return out, nil
}
