package netserve

import (
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"time"

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

// leases are the reboot leases held now. They live in memory only: a
// restarted server forgets them, so up to K more nodes may reboot while
// the ones it forgot are still down.
type leases struct {
	mu sync.Mutex
	m  map[string]Lease
}

// expire drops the leases past their time; l.mu is held.
func (l *leases) expire(s *Status, now time.Time) {
	for n, x := range l.m {
		if now.After(x.Expires) {
			s.Log.Printf("lease: %s's reboot lease expired (granted %s, no report from a new boot since)", n, x.Granted.Format(time.RFC3339))
			delete(l.m, n)
		}
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
	x, ok := l.m[rep.Node]
	if !ok {
		return
	}
	if rep.Boot != "" && rep.Boot != x.Boot || rep.Boot == "" && rep.Status.Running != x.Running {
		delete(l.m, rep.Node)
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
		if l.m == nil {
			l.m = map[string]Lease{}
		}
		l.m[node] = Lease{Node: node, Granted: now.UTC(), Expires: now.Add(timeout).UTC(), Boot: rep.Boot, Running: rep.Status.Running}
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
