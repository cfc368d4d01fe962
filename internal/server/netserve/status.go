package netserve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mkimage/mkimage/internal/atomicfile"
	"github.com/mkimage/mkimage/internal/update"
)

// StatusPath is where nodes report their status (POST StatusPath+NODE)
// and the build host reads it (GET StatusPath).
const StatusPath = update.StatusPath

// Status keeps the last status report of each node in Dir:
//
//	NODE.json  the last report, as update.Received
//	NODE.pub   the node's pinned key: the key of its first report
//
// Nodes push their reports (they run no server). A report must be
// signed by the key it carries, and that key must be the node name's
// pinned one: the first report of a name pins its key (trust on first
// use, as ssh's known_hosts); a report signed by another key is refused
// and logged. A reflashed node makes a new key: remove its NODE.pub to
// let it pin again. More lines in NODE.pub (public key file lines) are
// more keys the name may report with.
//
// With Nodes set (mkimage serve --config: the inventory), a report or
// lease request from a name not in it is refused (403) and logged: the
// inventory registers the nodes, and each name's key is still pinned at
// its first report.
type Status struct {
	Dir   string
	Log   *log.Logger
	Nodes map[string]bool // the inventory's node names; nil takes any name
	// MaxRebooting is how many reboot leases may be held at once (K; at
	// least 1), LeaseTimeout how long one lasts at most (default
	// DefaultLeaseTimeout). See serveLease.
	MaxRebooting int
	LeaseTimeout time.Duration

	mu     sync.Mutex // one pin at a time
	leases leases
}

// errPinned refuses a report signed by a key other than the node's
// pinned one.
var errPinned = errors.New("signed by a key other than the one pinned for this node")

// serve answers a request for StatusPath+node ("" for the list).
func (s *Status) serve(w http.ResponseWriter, r *http.Request, node string) {
	switch {
	case r.Method == http.MethodPost && node != "":
		s.receive(w, r, node)
	case (r.Method == http.MethodGet || r.Method == http.MethodHead) && node == "":
		s.list(w)
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		s.one(w, node)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "GET "+StatusPath+" lists the reports; nodes POST theirs to "+StatusPath+"NODE", http.StatusMethodNotAllowed)
	}
}

// receive checks and stores one report.
func (s *Status) receive(w http.ResponseWriter, r *http.Request, node string) {
	rep, key, ok := s.verified(w, r, node, "report")
	if !ok {
		return
	}
	b, err := json.MarshalIndent(update.Received{Report: rep, Received: time.Now().UTC(), From: r.RemoteAddr, Key: key.String()}, "", "  ")
	if err == nil {
		err = atomicfile.WriteFile(filepath.Join(s.Dir, node+".json"), append(b, '\n'), 0o644)
	}
	if err != nil {
		s.Log.Printf("status: refused a report for %q from %s: %v", node, r.RemoteAddr, err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.leases.booted(s, rep)
	w.WriteHeader(http.StatusNoContent)
}

// verified reads a request signed as a status report is (a report, or
// a reboot lease request carrying one), posted for node: the node must
// be in the inventory (if Nodes is set), the signature one of the body by
// the key sent, and the key the node's pinned one (pinned now if the
// node has none). On false, the request is answered and logged.
func (s *Status) verified(w http.ResponseWriter, r *http.Request, node, what string) (update.Report, update.PublicKey, bool) {
	refuse := func(code int, err error) (update.Report, update.PublicKey, bool) {
		s.Log.Printf("status: refused a %s for %q from %s: %v", what, node, r.RemoteAddr, err)
		http.Error(w, err.Error(), code)
		return update.Report{}, update.PublicKey{}, false
	}
	if err := update.CheckNodeName(node); err != nil {
		return refuse(http.StatusBadRequest, err)
	}
	if s.Nodes != nil && !s.Nodes[node] {
		return refuse(http.StatusForbidden, fmt.Errorf("node %q is not in the inventory this server was started with (add a [[node]] to the cluster config and restart mkimage serve, or check the node's hostname)", node))
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, update.MaxReportSize))
	if mb := new(http.MaxBytesError); errors.As(err, &mb) {
		return refuse(http.StatusRequestEntityTooLarge, fmt.Errorf("report over %d bytes", mb.Limit))
	}
	if err != nil {
		return refuse(http.StatusBadRequest, err)
	}
	rep, key, err := update.VerifyReport(body, r.Header.Get(update.ReportKeyHeader), r.Header.Get(update.ReportSignatureHeader))
	if errors.Is(err, update.ErrReportSignature) {
		return refuse(http.StatusForbidden, err)
	}
	if err != nil {
		return refuse(http.StatusBadRequest, err)
	}
	if rep.Node != node {
		return refuse(http.StatusBadRequest, fmt.Errorf("the report is %q's, posted as %q's", rep.Node, node))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.pin(node, key); errors.Is(err, errPinned) {
		return refuse(http.StatusForbidden, err)
	} else if err != nil {
		return refuse(http.StatusInternalServerError, err)
	}
	return rep, key, true
}

// pin accepts key for node if it is the pinned one, or pins it if the
// node has none yet.
func (s *Status) pin(node string, key update.PublicKey) error {
	p := filepath.Join(s.Dir, node+".pub")
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		if err := atomicfile.WriteNewFile(p, []byte(key.String()+"\n"), 0o644); err != nil {
			return err
		}
		s.Log.Printf("status: %s's first report: its key %s is pinned in %s", node, key, p)
		return nil
	}
	if err != nil {
		return err
	}
	pinned, err := update.ParsePublicKeys(b)
	if err != nil {
		return fmt.Errorf("%s: %w (fix it, or remove it to pin the node's next key)", p, err)
	}
	for _, k := range pinned {
		if update.SameKey(k, key) {
			return nil
		}
	}
	// The node is told what to do; the path is the build host's business.
	s.Log.Printf("status: %s is pinned to %s in %s; if the node was reflashed, remove that file", node, pinned[0], p)
	return fmt.Errorf("%w: %s (if the node was reflashed, remove %s.pub from the build host's status directory)", errPinned, key, node)
}

// Reports reads the last report of every node in dir, by node name.
// A damaged report is skipped and logged.
func (s *Status) Reports() ([]update.Received, error) {
	ents, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil, err
	}
	reps := []update.Received{}
	for _, e := range ents {
		node, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !e.Type().IsRegular() || update.CheckNodeName(node) != nil {
			continue // a pin, or a temporary of a write in flight
		}
		rep, err := s.read(node)
		if err != nil {
			s.Log.Printf("status: %v", err)
			continue
		}
		reps = append(reps, rep)
	}
	slices.SortFunc(reps, func(a, b update.Received) int { return strings.Compare(a.Node, b.Node) })
	return reps, nil
}

func (s *Status) read(node string) (update.Received, error) {
	var rep update.Received
	p := filepath.Join(s.Dir, node+".json")
	b, err := os.ReadFile(p)
	if err != nil {
		return rep, err
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return rep, fmt.Errorf("%s: %w", p, err)
	}
	return rep, nil
}

func (s *Status) list(w http.ResponseWriter) {
	reps, err := s.Reports()
	if err != nil {
		s.Log.Printf("status: %v", err)
		http.Error(w, "cannot read the reports", http.StatusInternalServerError)
		return
	}
	writeJSON(w, reps)
}

func (s *Status) one(w http.ResponseWriter, node string) {
	if update.CheckNodeName(node) != nil {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	rep, err := s.read(node)
	if errors.Is(err, fs.ErrNotExist) {
		http.Error(w, "no report from "+node, http.StatusNotFound)
		return
	}
	if err != nil {
		s.Log.Printf("status: %v", err)
		http.Error(w, "cannot read the report", http.StatusInternalServerError)
		return
	}
	writeJSON(w, rep)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// FetchStatus gets every node's last report from the server at base
// (mkimage serve --status-dir, e.g. http://build-host:8080).
func FetchStatus(ctx context.Context, base string) ([]update.Received, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server URL %q: want http://HOST[:PORT] of mkimage serve --status-dir", base)
	}
	u = u.JoinPath(StatusPath)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, fmt.Errorf("GET %s: %s: %s (is the server run with --status-dir?)", u, resp.Status, strings.TrimSpace(string(msg)))
	}
	var reps []update.Received
	if err := json.NewDecoder(resp.Body).Decode(&reps); err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	return reps, nil
}
