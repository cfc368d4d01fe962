package updater

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mkimage/mkimage/internal/bootstate"
	"github.com/mkimage/mkimage/internal/node/apply"
	"github.com/mkimage/mkimage/internal/node/firstboot"
	"github.com/mkimage/mkimage/internal/node/versions"
)

// Apply installs the bundle at url (a bundle directory over HTTP) as the
// version the next boot tries, keeping the node's identity; see
// apply.Apply.
func (c *Card) Apply(ctx context.Context, url string, older, retry bool) (apply.Result, error) {
	return apply.Apply(ctx, apply.Options{
		Source: url, Top: c.Top, Boot: c.Boot,
		Incoming: filepath.Join(c.Top, versions.StateDir, "node", "incoming"),
		Keys:     c.Keys, Board: c.Board, Running: c.Running,
		AllowOlder: older, Retry: retry, Log: c.Log,
		Carry: firstboot.Carry,
	})
}

// DefaultURL is the bundle URL the root names in URLFile, "" if none.
func (c *Card) DefaultURL() string {
	return lastLine(filepath.Join(c.Root, URLFile))
}

// Commit makes the running version, if it is being tried, the good one
// without running the checks.
func (c *Card) Commit() error { return apply.Commit(c.Boot, c.Running) }

// Prune deletes old versions, keeping keep besides good, tried and
// running.
func (c *Card) Prune(keep int) error { return apply.Prune(c.Top, c.Boot, c.Running, keep, c.Log) }

// Status is a node's versions, as `nodeinit update status --json` prints
// it.
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

// Status reads what the card holds.
func (c *Card) Status() (Status, error) {
	st, err := bootstate.Read(c.Boot)
	if err != nil {
		return Status{}, fmt.Errorf("boot state on %s: %w", c.Boot, err)
	}
	s := Status{Running: c.Running, Good: st.Good}
	if st.Try != st.Good {
		s.Trying, s.Tries = st.Try, st.Tries
	}
	ids := map[string]bool{}
	ents, err := os.ReadDir(filepath.Join(c.Top, versions.RootsDir))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return s, err
	}
	for _, e := range ents {
		if bootstate.ValidID(e.Name()) == nil {
			ids[e.Name()] = true
		}
	}
	recs, _ := os.ReadDir(filepath.Join(c.Top, apply.RecordsDir))
	for _, e := range recs {
		if id, ok := strings.CutSuffix(e.Name(), ".bad"); ok && bootstate.ValidID(id) == nil {
			ids[id] = true
		}
	}
	for id := range ids {
		v := Version{ID: id, Running: id == c.Running, State: "old"}
		if m, err := apply.ReadRecord(c.Top, id); err == nil {
			v.Created = m.Created
		}
		rec := filepath.Join(c.Top, apply.RecordsDir, id)
		switch {
		case id == st.Good:
			v.State = "good"
		case id == s.Trying:
			v.State = "trying"
			v.Why = lastLine(rec + whySuffix)
		case lastLine(rec+".bad") != "":
			v.State, v.Why = "bad", lastLine(rec+".bad")
		}
		s.Versions = append(s.Versions, v)
	}
	slices.SortFunc(s.Versions, func(a, b Version) int {
		if a.Created != b.Created {
			return int(a.Created - b.Created)
		}
		return strings.Compare(a.ID, b.ID)
	})
	return s, nil
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
