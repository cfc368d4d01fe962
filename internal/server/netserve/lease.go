package netserve

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mkimage/mkimage/internal/atomicfile"
	"github.com/mkimage/mkimage/internal/update"
)

// LeasePath is where a node asks for a reboot lease (POST LeasePath+NODE)
// and the build host lists the leases held (GET LeasePath).
const LeasePath = update.LeasePath

// DefaultLeaseTimeout ends a lease whose node never reports back (a
// board that does not come up must not hold a slot for ever).
const DefaultLeaseTimeout = 15 * time.Minute

// Lease is a reboot lease as the server holds it and lists it.
type Lease struct {
	Node    string    `json:"node"`
	Granted time.Time `json:"granted"`
	Expires time.Time `json:"expires"`
	// Boot and Running are the boot id and version of the request: the
	// lease ends at the node's first report from another boot.
	Boot    string `json:"boot,omitempty"`
	Running string `json:"running"`
}

// leaseFile, in the status directory, holds the leases: a server
// restarted mid-rollout (a crash, a power cut) must not forget the nodes
// that are rebooting and let K more go down at once. Not NODE.json, so
// no report is ever read from it.
const leaseFile = "reboot-leases"

// leases are the reboot leases held now, kept in leaseFile.
type leases struct {
	mu     sync.Mutex
	m      map[string]Lease
	loaded bool
}

// load reads leaseFile once; l.mu is held. A damaged file is logged and
// taken as no leases: the timeout bounds what that lets through.
func (l *leases) load(s *Status) {
	if l.loaded {
		return
	}
	l.loaded = true
	l.m = map[string]Lease{}
	b, err := os.ReadFile(filepath.Join(s.Dir, leaseFile))
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	var list []Lease
	if err == nil {
		err = json.Unmarshal(b, &list)
	}
	if err != nil {
		s.Log.Printf("lease: %s: %v (taken as no leases held)", leaseFile, err)
		return
	}
	for _, x := range list {
		if update.CheckNodeName(x.Node) == nil {
			l.m[x.Node] = x
		}
	}
	if len(l.m) > 0 {
		s.Log.Printf("lease: %d reboot leases held before the restart: %s", len(l.m), strings.Join(l.held(), ", "))
	}
}

// save writes the leases to leaseFile; l.mu is held. A failed write is
// logged: the leases in memory still hold.
func (l *leases) save(s *Status) {
	list := []Lease{}
	for _, n := range l.held() {
		list = append(list, l.m[n])
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err == nil {
		err = atomicfile.WriteFile(filepath.Join(s.Dir, leaseFile), append(b, '\n'), 0o644)
	}
	if err != nil {
		s.Log.Printf("lease: saving %s: %v", leaseFile, err)
	}
}

// expire drops the leases past their time; l.mu is held.
func (l *leases) expire(s *Status, now time.Time) {
	l.load(s)
	changed := false
	for n, x := range l.m {
		if now.After(x.Expires) {
			s.Log.Printf("lease: %s's reboot lease expired (granted %s, no report from a new boot since)", n, x.Granted.Format(time.RFC3339))
			delete(l.m, n)
			changed = true
		}
	}
	if changed {
		l.save(s)
	}
}

// held lists the nodes holding leases; l.mu is held.
func (l *leases) held() []string {
	var names []string
	for n := range l.m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// booted ends rep.Node's lease if the report comes from another boot
// than the lease request (or, from a node that sends no boot id, runs
// another version).
func (l *leases) booted(s *Status, rep update.Report) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.load(s)
	x, ok := l.m[rep.Node]
	if !ok {
		return
	}
	if rep.Boot != "" && rep.Boot != x.Boot || rep.Boot == "" && rep.Status.Running != x.Running {
		delete(l.m, rep.Node)
		l.save(s)
		s.Log.Printf("lease: %s is back up (running %s): its reboot lease ends", rep.Node, rep.Status.Running)
	}
}

// serveLease answers LeasePath+node: a POST signed as a status report
// is (its body the node's Report, by its pinned key) asks for a lease; it
// is granted while fewer than MaxRebooting are held (a node holding one
// is granted it again), else refused with 429 and Retry-After. GET
// LeasePath lists the leases.
func (s *Status) serveLease(w http.ResponseWriter, r *http.Request, node string) {
	switch {
	case r.Method == http.MethodPost && node != "":
	case (r.Method == http.MethodGet || r.Method == http.MethodHead) && node == "":
		s.leases.mu.Lock()
		s.leases.expire(s, time.Now())
		list := []Lease{}
		for _, n := range s.leases.held() {
			list = append(list, s.leases.m[n])
		}
		s.leases.mu.Unlock()
		writeJSON(w, list)
		return
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "nodes POST their lease requests to "+LeasePath+"NODE; GET "+LeasePath+" lists the leases", http.StatusMethodNotAllowed)
		return
	}
	rep, _, ok := s.verified(w, r, node, "reboot lease request")
	if !ok {
		return
	}
	max := max(s.MaxRebooting, 1)
	timeout := s.LeaseTimeout
	if timeout <= 0 {
		timeout = DefaultLeaseTimeout
	}
	now := time.Now()
	l := &s.leases
	l.mu.Lock()
	l.expire(s, now)
	_, has := l.m[node]
	granted := has || len(l.m) < max
	if granted && !has {
		l.m[node] = Lease{Node: node, Granted: now.UTC(), Expires: now.Add(timeout).UTC(), Boot: rep.Boot, Running: rep.Status.Running}
		l.save(s)
		s.Log.Printf("lease: %s may reboot (%d of %d leases held)", node, len(l.m), max)
	}
	ans := update.LeaseAnswer{Granted: granted, Held: l.held(), Max: max}
	l.mu.Unlock()
	if !granted {
		// The node asks again after this; a slot frees when a node
		// reports from its new boot, which takes about a minute.
		w.Header().Set("Retry-After", "10")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		json.NewEncoder(w).Encode(ans)
		return
	}
	writeJSON(w, ans)
}
