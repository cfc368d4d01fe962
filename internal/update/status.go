package update

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Status is a node's versions, as `nodeinit update status --json` prints
// it and a node's status report carries it to the build host.
type Status struct {
	Running  string    `json:"running"`
	Good     string    `json:"good"`
	Trying   string    `json:"trying,omitempty"`
	Tries    int       `json:"tries_left,omitempty"`
	Versions []Version `json:"versions"`
}

// Version is one version a card holds or refused.
type Version struct {
	ID      string `json:"id"`
	Created int64  `json:"created,omitempty"` // from its bundle; 0 for the card's first
	State   string `json:"state"`             // good, trying, bad, failed checks, old
	Running bool   `json:"running,omitempty"`
	// Why says why a bad version failed, or what its last check said.
	Why string `json:"why,omitempty"`
}

// Bad returns the versions the node recorded bad, oldest first.
func (s Status) Bad() []Version {
	var bad []Version
	for _, v := range s.Versions {
		if v.State == "bad" {
			bad = append(bad, v)
		}
	}
	return bad
}

// Print writes the status as a table.
func (s Status) Print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "running\t%s\n", s.Running)
	fmt.Fprintf(tw, "good\t%s\n", s.Good)
	if s.Trying != "" {
		fmt.Fprintf(tw, "trying\t%s (%d boots left)\n", s.Trying, s.Tries)
	} else {
		fmt.Fprintf(tw, "trying\t-\n")
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "VERSION\tCREATED\tSTATE\tWHY")
	for _, v := range s.Versions {
		created := "-"
		if v.Created > 0 {
			created = time.Unix(v.Created, 0).UTC().Format("2006-01-02 15:04 UTC")
		}
		state := v.State
		if v.Running {
			state += ", running"
		}
		why := v.Why
		if why == "" {
			why = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", v.ID, created, state, why)
	}
	return tw.Flush()
}
