package kernelconfig

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/mkimage/mkimage/boards"
)

// Requirement sets are the embedded fragments ("lxc", "netfilter",
// "btrfs", "soc/meson-gxbb", ...) and "board:NAME", the union of a
// board's fragments.

// CheckRow is one line of a check report.
type CheckRow struct {
	Set    string `json:"set"`
	Symbol string `json:"symbol"`
	Wanted string `json:"wanted"`
	Actual string `json:"actual"`
	Mode   string `json:"mode"`
	OK     bool   `json:"ok"`
	Status string `json:"status"`
	Source string `json:"source"`
}

// CheckReport is the result of Check.
type CheckReport struct {
	Rows []CheckRow `json:"rows"`
	// Failed counts required rows that are not satisfied.
	Failed int `json:"failed"`
}

// RequirementSet returns the settings of a named set.
func RequirementSet(name string) ([]Setting, error) {
	if b, ok := strings.CutPrefix(name, "board:"); ok {
		board, err := boards.Get(b)
		if err != nil {
			return nil, fmt.Errorf("requirement set %q: %w", name, err)
		}
		frags, err := ForBoard(board)
		if err != nil {
			return nil, err
		}
		return Merge(frags...).Settings, nil
	}
	f, err := Embedded(name)
	if err != nil {
		return nil, fmt.Errorf("requirement set %q: %w; or use board:NAME", name, err)
	}
	return Merge(f).Settings, nil
}

// Check compares cfg with the named requirement sets. A wanted y or m is
// satisfied by y or m (by y only for @builtin settings); a wanted n by n
// or absence; other values must match exactly.
func Check(cfg Config, sets []string) (*CheckReport, error) {
	rep := &CheckReport{}
	for _, set := range sets {
		settings, err := RequirementSet(set)
		if err != nil {
			return nil, err
		}
		for _, s := range settings {
			row := CheckRow{Set: set, Symbol: s.Symbol, Wanted: wantText(s), Actual: cfg.Get(s.Symbol), Mode: s.Mode.String(), Source: s.Source()}
			if _, ok := cfg[s.Symbol]; !ok {
				row.Actual = "-"
			}
			row.OK = satisfied(s, cfg.Get(s.Symbol))
			switch {
			case row.OK:
				row.Status = "ok"
			case s.Mode == Optional:
				row.Status = "missing (optional)"
			default:
				row.Status = "MISSING"
				rep.Failed++
			}
			if !row.OK && s.Value != "y" && s.Value != "m" {
				row.Status = strings.Replace(strings.Replace(row.Status, "missing", "differs", 1), "MISSING", "DIFFERS", 1)
			}
			rep.Rows = append(rep.Rows, row)
		}
	}
	return rep, nil
}

func wantText(s Setting) string {
	switch {
	case s.Value == "y" && s.Mode == Builtin:
		return "built-in"
	case s.Value == "y" || s.Value == "m":
		return "enabled"
	case s.Value == "n":
		return "disabled"
	}
	return s.Value
}

func satisfied(s Setting, got string) bool {
	switch s.Value {
	case "y":
		return got == "y" || (got == "m" && s.Mode != Builtin)
	case "m":
		return got == "y" || got == "m"
	}
	return got == s.Value
}

// WriteTable prints the report like lxc-checkconfig, one row per symbol.
func (r *CheckReport) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SET\tSYMBOL\tWANTED\tACTUAL\tSTATUS")
	for _, row := range r.Rows {
		fmt.Fprintf(tw, "%s\tCONFIG_%s\t%s\t%s\t%s\n", row.Set, row.Symbol, row.Wanted, row.Actual, row.Status)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d required missing, %d rows\n", r.Failed, len(r.Rows))
	return err
}

// WriteJSON prints the report as JSON.
func (r *CheckReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// SetNames lists the names Check accepts.
func SetNames() []string {
	names := append([]string{}, Names()...)
	for _, b := range boards.Names() {
		names = append(names, "board:"+b)
	}
	sort.Strings(names)
	return names
}
