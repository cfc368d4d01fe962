package kernelconfig

import (
	"fmt"
	"sort"
	"strings"

	"github.com/mkimage/mkimage/internal/build/kconfig"
)

// Loss is a requested setting that did not survive resolution.
type Loss struct {
	Setting
	Got string // the resolved value, "n" for unset
	// Reason explains the loss when the Kconfig tree tells why.
	Reason string
	// Unknown: the symbol does not exist in this kernel's Kconfig.
	Unknown bool
}

func (l Loss) String() string {
	got := l.Got
	if got == "n" {
		got = "unset"
	}
	if l.Unknown {
		return fmt.Sprintf("%s=%s requested (%s, %s): %s does not exist in this kernel's Kconfig", l.Symbol, l.Value, l.Mode, l.Source(), l.Symbol)
	}
	s := fmt.Sprintf("%s=%s requested, got %s (%s, %s)", l.Symbol, l.Value, got, l.Mode, l.Source())
	if l.Reason != "" {
		s += ": " + l.Reason
	}
	return s
}

// Fatal reports whether the loss must stop the build.
func (l Loss) Fatal() bool { return l.Mode != Optional }

// Compare lists every setting of m that the resolved config got does not
// hold, explained with the kernel's Kconfig tree when tree is not nil.
// A requested m that became y is kept (something built in needs it).
func Compare(m *Merged, got Config, tree *kconfig.Tree) []Loss {
	var losses []Loss
	for _, s := range m.Settings {
		g := got.Get(s.Symbol)
		if survived(s.Value, g) {
			continue
		}
		l := Loss{Setting: s, Got: g}
		if tree != nil {
			sym := tree.Symbols[s.Symbol]
			if sym == nil || len(sym.Defs) == 0 {
				l.Unknown = true
			} else {
				l.Reason = explain(sym, s.Value, got)
			}
		} else if _, ok := got[s.Symbol]; !ok {
			l.Reason = "not in the resolved config (unknown symbol or unmet dependency)"
		}
		losses = append(losses, l)
	}
	return losses
}

func survived(want, got string) bool {
	if want == got {
		return true
	}
	return want == "m" && got == "y"
}

func level(v string) int {
	switch v {
	case "y":
		return kconfig.Yes
	case "m":
		return kconfig.Mod
	case "n":
		return kconfig.No
	}
	return kconfig.Yes // strings and numbers need the symbol visible
}

func explain(sym *kconfig.Symbol, want string, got Config) string {
	v := kconfig.Values(got.Get)
	wl := level(want)
	if want != "n" {
		// Dependencies: the best of the definitions counts.
		best, bestLevel := sym.Defs[0], -1
		for _, d := range sym.Defs {
			l := kconfig.Yes
			if d.Depends != nil {
				l = d.Depends.Eval(v)
			}
			if l > bestLevel {
				best, bestLevel = d, l
			}
		}
		if bestLevel < wl {
			// Name the blockers: the conjuncts that are off, or, when
			// none is, those that cap the symbol at m.
			limit := wl
			if bestLevel == kconfig.No {
				limit = kconfig.Mod
			}
			var unmet []string
			for _, c := range kconfig.Conjuncts(best.Depends) {
				if c.Eval(v) < limit {
					unmet = append(unmet, c.Explain(v))
				}
			}
			why := "depends on " + strings.Join(unmet, " && ")
			if bestLevel == kconfig.Mod {
				why += ", which allows m at most"
			}
			return why + fmt.Sprintf(" (%s:%d)", best.File, best.Line)
		}
		if sym.Type == "bool" && want == "m" {
			return "it is bool: use y"
		}
		var prompted []*kconfig.Def
		for _, d := range sym.Defs {
			if d.Prompt {
				prompted = append(prompted, d)
			}
		}
		if len(prompted) == 0 {
			return "it has no prompt: only a select or its default sets it" + selectors(sym, v, false)
		}
		for _, d := range prompted {
			if d.PromptIf == nil || d.PromptIf.Eval(v) > kconfig.No {
				return "dependencies are met; a choice, range or select in the Kconfig overrode it"
			}
		}
		d := prompted[0]
		return fmt.Sprintf("its prompt is hidden unless %s (%s:%d)", d.PromptIf.Explain(v), d.File, d.Line)
	}
	// Wanted off, but on.
	if s := selectors(sym, v, true); s != "" {
		return strings.TrimPrefix(s, "; ")
	}
	for _, d := range sym.Defs {
		if d.Prompt && d.PromptIf != nil && d.PromptIf.Eval(v) == kconfig.No {
			return fmt.Sprintf("its prompt is hidden unless %s, so its default applies (%s:%d)", d.PromptIf.Explain(v), d.File, d.Line)
		}
		if !d.Prompt {
			return "it has no prompt, so its default applies"
		}
	}
	return "its default or a select in the Kconfig turned it on"
}

// selectors names symbols selecting sym; active=true lists only those
// that are on now.
func selectors(sym *kconfig.Symbol, v kconfig.Values, active bool) string {
	var on, all []string
	for _, s := range sym.SelectedBy {
		by := v(s.By)
		if (by == "y" || by == "m") && (s.If == nil || s.If.Eval(v) > kconfig.No) {
			verb := "selected"
			if s.Imply {
				verb = "implied"
			}
			on = append(on, fmt.Sprintf("%s by %s (=%s)", verb, s.By, by))
		}
		all = append(all, s.By)
	}
	if active {
		if len(on) == 0 {
			return ""
		}
		return "; " + strings.Join(on, ", ")
	}
	if len(all) == 0 {
		return ""
	}
	sort.Strings(all)
	if len(all) > 4 {
		all = append(all[:4], fmt.Sprintf("and %d more", len(all)-4))
	}
	return "; set one of: " + strings.Join(all, ", ")
}
