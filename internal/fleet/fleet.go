// Package fleet is the build host's view of a fleet and its hand on
// rollouts: the status of every inventory node from the nodes' reports
// to mkimage serve (Status), and a rollout that publishes a signed
// channel document and opens its waves one by one while the nodes take
// the version, halting when too many of a wave fail (Rollout).
package fleet

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mkimage/mkimage/internal/cluster"
	"github.com/mkimage/mkimage/internal/update"
)

// Row is one inventory node's status.
type Row struct {
	Node    string `json:"node"`
	Role    string `json:"role"`
	Running string `json:"running,omitempty"`
	Good    string `json:"good,omitempty"`
	Trying  string `json:"trying,omitempty"`
	// Failed are the versions the node recorded bad, and why.
	Failed []update.Version `json:"failed,omitempty"`
	// LastSeen is when the server received the node's last report;
	// nil for a node that never reported.
	LastSeen *time.Time `json:"last_seen"`
}

// Status is one row per inventory node, in inventory order, from the
// reports the status server keeps (netserve.FetchStatus). Reports from
// names not in the inventory are left out.
func Status(cfg *cluster.Config, reps []update.Received) []Row {
	byNode := map[string]update.Received{}
	for _, r := range reps {
		byNode[r.Node] = r
	}
	rows := make([]Row, 0, len(cfg.Nodes))
	for _, n := range cfg.Nodes {
		row := Row{Node: string(n.Name), Role: string(n.Role)}
		if r, ok := byNode[row.Node]; ok {
			s := r.Status
			seen := r.Received
			row.Running, row.Good, row.Trying, row.Failed, row.LastSeen = s.Running, s.Good, s.Trying, s.Bad(), &seen
		}
		rows = append(rows, row)
	}
	return rows
}

// Print writes rows as a table; ago says how long ago a time was.
func Print(w io.Writer, rows []Row, ago func(time.Time) string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tRUNNING\tGOOD\tTRYING\tFAILED\tLAST SEEN")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, r := range rows {
		var failed []string
		for _, v := range r.Failed {
			failed = append(failed, v.ID+": "+dash(v.Why))
		}
		seen := "never"
		if r.LastSeen != nil {
			seen = ago(*r.LastSeen)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Node, r.Role, dash(r.Running), dash(r.Good), dash(r.Trying), dash(strings.Join(failed, "; ")), seen)
	}
	return tw.Flush()
}
