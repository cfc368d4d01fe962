package updater

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/mkimage/mkimage/internal/bootstate"
	"github.com/mkimage/mkimage/internal/node/apply"
	"github.com/mkimage/mkimage/internal/node/firstboot"
	"github.com/mkimage/mkimage/internal/node/versions"
	"github.com/mkimage/mkimage/internal/update"
)

// Apply installs the bundle at url (a bundle directory over HTTP, or
// oci://REF in a registry, with the login in RegistryAuthFile) as the
// version the next boot tries, keeping the node's identity; see
// apply.Apply. Installed or refused, the node then reports its status
// to the build host named in StatusURLFile, if any.
func (c *Card) Apply(ctx context.Context, url string, older, retry bool) (apply.Result, error) {
	return c.apply(ctx, url, "", older, retry)
}

// apply is Apply taking only version want ("": any).
func (c *Card) apply(ctx context.Context, url, want string, older, retry bool) (apply.Result, error) {
	defer c.ReportIfConfigured(ctx)
	return apply.Apply(ctx, apply.Options{
		Source: url, Top: c.Top, Boot: c.Boot,
		Incoming: filepath.Join(c.Top, versions.StateDir, "node", "incoming"),
		Keys:     c.Keys, Board: c.Board, Running: c.Running,
		AllowOlder: older, Retry: retry, Want: want, Log: c.Log,
		Carry: firstboot.Carry, Credentials: c.registryLogin,
	})
}

// registryLogin is the login RegistryAuthFile holds, for any registry
// (a node takes its updates from one): none when the file is absent.
func (c *Card) registryLogin(host string) (string, string, error) {
	p := filepath.Join(c.Root, RegistryAuthFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return "", "", nil
	} else if err != nil {
		return "", "", err
	}
	user, secret, ok := strings.Cut(strings.TrimRight(string(b), "\r\n"), ":")
	if !ok || user == "" || strings.ContainsAny(user+secret, "\r\n") {
		return "", "", fmt.Errorf("%s: want one line user:secret (the login for %s)", p, host)
	}
	return user, secret, nil
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

// Status and Version are the shared types (internal/update), so the
// build host reads a node's status report with the node's own types.
type (
	Status  = update.Status
	Version = update.Version
)

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
