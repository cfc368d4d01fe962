package builder

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Timing is how long one pipeline stage took.
type Timing struct {
	Stage   string  `json:"stage"`
	Seconds float64 `json:"seconds"`
}

// Timings are a build's stages in the order they ran.
type Timings []Timing

// time runs f as stage and records how long it took, failed or not.
func (t *Timings) time(stage string, f func() error) error {
	start := time.Now()
	err := f()
	*t = append(*t, Timing{Stage: stage, Seconds: time.Since(start).Seconds()})
	return err
}

// Print writes the stages as a table with their share of the total.
func (t Timings) Print(w io.Writer) {
	var total float64
	for _, s := range t {
		total += s.Seconds
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "stage\tseconds\tshare\t")
	for _, s := range t {
		share := 0.0
		if total > 0 {
			share = 100 * s.Seconds / total
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.0f%%\t\n", s.Stage, s.Seconds, share)
	}
	fmt.Fprintf(tw, "total\t%.2f\t\t\n", total)
	tw.Flush()
}
