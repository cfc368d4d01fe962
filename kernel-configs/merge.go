package kernelconfig

import (
	"bufio"
	"fmt"
	"io"
)

// Merged is the result of merging fragments in order.
type Merged struct {
	// Settings holds the final setting of each symbol, in the order
	// symbols first appeared.
	Settings []Setting
	// Conflicts lists every symbol set to two different values; the later
	// one (New) won.
	Conflicts []Conflict
}

// Conflict is one symbol set two different ways.
type Conflict struct {
	Symbol   string
	Old, New Setting
}

func (c Conflict) String() string {
	return fmt.Sprintf("CONFIG_%s: %s (%s) overridden by %s (%s)", c.Symbol, c.Old.Value, c.Old.Source(), c.New.Value, c.New.Source())
}

// Merge merges fragments in order: a later setting of a symbol wins. When
// two fragments agree on the value the stronger mode is kept, so an
// optional repeat does not weaken a requirement; when they disagree the
// later setting wins whole, mode included.
func Merge(frags ...*Fragment) *Merged {
	m := &Merged{}
	idx := map[string]int{}
	for _, f := range frags {
		for _, s := range f.Settings {
			i, seen := idx[s.Symbol]
			if !seen {
				idx[s.Symbol] = len(m.Settings)
				m.Settings = append(m.Settings, s)
				continue
			}
			old := m.Settings[i]
			if old.Value != s.Value {
				m.Conflicts = append(m.Conflicts, Conflict{Symbol: s.Symbol, Old: old, New: s})
				m.Settings[i] = s
				continue
			}
			if stronger(old.Mode, s.Mode) {
				s.Mode = old.Mode
			}
			m.Settings[i] = s
		}
	}
	return m
}

// stronger reports whether a asks more than b (builtin > required > optional).
func stronger(a, b Mode) bool {
	rank := map[Mode]int{Optional: 0, Required: 1, Builtin: 2}
	return rank[a] > rank[b]
}

// Lookup returns the final setting of sym.
func (m *Merged) Lookup(sym string) (Setting, bool) {
	for _, s := range m.Settings {
		if s.Symbol == sym {
			return s, true
		}
	}
	return Setting{}, false
}

// WriteTo writes the merged fragment: one line per symbol with its source
// and markers, so the output parses back to the same settings and modes
// and is accepted by the kernel as KCONFIG_ALLCONFIG.
func (m *Merged) WriteTo(w io.Writer) (int64, error) {
	bw := bufio.NewWriter(w)
	cw := &countWriter{w: bw}
	fmt.Fprintf(cw, "# Merged by mkimage kconfig; later fragments win.\n")
	mode := Mode(-1)
	for _, s := range m.Settings {
		if s.Mode != mode {
			fmt.Fprintf(cw, "# @%s\n", s.Mode)
			mode = s.Mode
		}
		fmt.Fprintf(cw, "# %s\n%s\n", s.Source(), s)
	}
	if err := bw.Flush(); err != nil {
		return cw.n, err
	}
	return cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
