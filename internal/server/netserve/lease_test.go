package netserve

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/update"
	"github.com/mkimage/mkimage/internal/update/updatetest"
)

// signedPost POSTs node's signed report (boot id boot, running version
// running) to url and returns the answer's code and body.
func signedPost(t *testing.T, url, node, boot, running string, k update.PrivateKey) (int, string) {
	t.Helper()
	body, key, sig, err := update.SignReport(update.Report{Node: node, Time: time.Now(), Boot: boot, Status: update.Status{Running: running, Good: running}}, k)
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set(update.ReportKeyHeader, key)
	req.Header.Set(update.ReportSignatureHeader, sig)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestLeasesConcurrent: 20 nodes ask a real server for reboot leases at
// once, hold them a moment, then "reboot" (report from a new boot id);
// never more than K hold one, and every node gets one.
func TestLeasesConcurrent(t *testing.T) {
	const k, nodes = 3, 20
	inv := map[string]bool{}
	for i := range nodes {
		inv[fmt.Sprintf("node-%02d", i)] = true
	}
	logs := &lineLog{}
	st := &Status{Dir: t.TempDir(), Log: log.New(logs, "", 0), Nodes: inv, MaxRebooting: k}
	srv := httptest.NewServer(&HTTP{Files: Files{Dir: t.TempDir()}, Status: st, Log: log.New(&lineLog{}, "", 0)})
	defer srv.Close()
	var holding, most, refusals atomic.Int32
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			node, key := fmt.Sprintf("node-%02d", i), updatetest.Key(byte(i+1))
			for tries := 0; ; tries++ {
				code, body := signedPost(t, srv.URL+LeasePath+node, node, "boot-1", "1111111111111111", key)
				if code == http.StatusOK {
					break
				}
				if code != http.StatusTooManyRequests || tries > 2000 {
					t.Errorf("%s: %d %s", node, code, body)
					return
				}
				refusals.Add(1)
				time.Sleep(2 * time.Millisecond)
			}
			n := holding.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(30 * time.Millisecond) // rebooting
			holding.Add(-1)
			// Back up: the report from the new boot ends the lease.
			if code, body := signedPost(t, srv.URL+StatusPath+node, node, "boot-2", "2222222222222222", key); code != http.StatusNoContent {
				t.Errorf("%s's report: %d %s", node, code, body)
			}
		}()
	}
	wg.Wait()
	// Under load fewer than K may overlap; more never may.
	t.Logf("at most %d leases held at once, %d refusals", most.Load(), refusals.Load())
	if most.Load() > k || refusals.Load() == 0 {
		t.Errorf("at most %d leases held at once, %d refusals; want at most %d held, some refused", most.Load(), refusals.Load(), k)
	}
	resp, err := http.Get(srv.URL + LeasePath)
	if err != nil {
		t.Fatal(err)
	}
	var held []Lease
	json.NewDecoder(resp.Body).Decode(&held)
	resp.Body.Close()
	if len(held) != 0 || !logs.has("node-07 is back up (running 2222222222222222): its reboot lease ends") {
		t.Errorf("leases left: %+v; log %q", held, logs.lines)
	}
}

// TestLeaseRules: a lease is held until a report from another boot or
// its timeout; asking again while holding is granted; a report from the
// same boot keeps it; the inventory and the pinned key are enforced.
func TestLeaseRules(t *testing.T) {
	logs := &lineLog{}
	st := &Status{Dir: t.TempDir(), Log: log.New(logs, "", 0), Nodes: map[string]bool{"node-01": true, "node-02": true}, MaxRebooting: 1, LeaseTimeout: 300 * time.Millisecond}
	srv := httptest.NewServer(&HTTP{Files: Files{Dir: t.TempDir()}, Status: st, Log: log.New(&lineLog{}, "", 0)})
	defer srv.Close()
	a, b := updatetest.Key(1), updatetest.Key(2)
	const v1 = "1111111111111111"
	steps := []struct {
		name             string
		path, node, boot string
		key              update.PrivateKey
		code             int
		body             string
	}{
		{"first lease", LeasePath, "node-01", "b1", a, http.StatusOK, `"granted": true`},
		{"asked again while held", LeasePath, "node-01", "b1", a, http.StatusOK, `"granted": true`},
		{"second node waits", LeasePath, "node-02", "c1", b, http.StatusTooManyRequests, `"held":["node-01"]`},
		{"report from the same boot keeps it", StatusPath, "node-01", "b1", a, http.StatusNoContent, ""},
		{"second node still waits", LeasePath, "node-02", "c1", b, http.StatusTooManyRequests, `"max":1`},
		{"another key for a pinned node", LeasePath, "node-01", "b1", b, http.StatusForbidden, "pinned"},
		{"node outside the inventory", LeasePath, "node-03", "d1", updatetest.Key(3), http.StatusForbidden, "not in the inventory"},
		{"report outside the inventory", StatusPath, "node-03", "d1", updatetest.Key(3), http.StatusForbidden, "not in the inventory"},
		{"report from a new boot ends it", StatusPath, "node-01", "b2", a, http.StatusNoContent, ""},
		{"second node's turn", LeasePath, "node-02", "c1", b, http.StatusOK, `"held": [`},
	}
	for _, s := range steps {
		code, body := signedPost(t, srv.URL+s.path+s.node, s.node, s.boot, v1, s.key)
		if code != s.code || !strings.Contains(body, s.body) {
			t.Errorf("%s: %d %q, want %d with %q", s.name, code, body, s.code, s.body)
		}
	}
	if !logs.has(`refused a reboot lease request for "node-03"`) {
		t.Errorf("log: %q", logs.lines)
	}
	// node-02 never reports back: its lease times out.
	time.Sleep(400 * time.Millisecond)
	if code, body := signedPost(t, srv.URL+LeasePath+"node-01", "node-01", "b2", v1, a); code != http.StatusOK {
		t.Errorf("after node-02's lease expired: %d %s", code, body)
	}
	if !logs.has("node-02's reboot lease expired") {
		t.Errorf("log: %q", logs.lines)
	}
}

// TestLeasesSurviveRestart: a server restarted with leases held (a crash
// mid-rollout) still counts them, so it never lets K more nodes reboot
// while the first ones are down; a report from the new boot still ends
// a lease granted before the restart, and a damaged lease file counts as
// none (the timeout bounds that).
func TestLeasesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	start := func() (*httptest.Server, *lineLog) {
		logs := &lineLog{}
		st := &Status{Dir: dir, Log: log.New(logs, "", 0), MaxRebooting: 2}
		return httptest.NewServer(&HTTP{Files: Files{Dir: t.TempDir()}, Status: st, Log: log.New(&lineLog{}, "", 0)}), logs
	}
	ask := func(srv *httptest.Server, node string, k update.PrivateKey) int {
		code, _ := signedPost(t, srv.URL+LeasePath+node, node, "boot-1", "1111111111111111", k)
		return code
	}
	a, b, c := updatetest.Key(1), updatetest.Key(2), updatetest.Key(3)
	srv, _ := start()
	if ask(srv, "a", a) != http.StatusOK || ask(srv, "b", b) != http.StatusOK {
		t.Fatal("the first two leases were not granted")
	}
	srv.Close()

	srv, logs := start()
	defer srv.Close()
	if code := ask(srv, "c", c); code != http.StatusTooManyRequests {
		t.Errorf("after the restart with 2 of 2 leases held, a third node got %d, want 429", code)
	}
	if !logs.has("2 reboot leases held before the restart: a, b") {
		t.Errorf("the restart does not say which leases it kept:\n%s", strings.Join(logs.lines, "\n"))
	}
	// a comes back up: its lease ends, and c may go.
	if code, body := signedPost(t, srv.URL+StatusPath+"a", "a", "boot-2", "2222222222222222", a); code != http.StatusNoContent {
		t.Fatalf("report from a's new boot: %d %s", code, body)
	}
	if code := ask(srv, "c", c); code != http.StatusOK {
		t.Errorf("after a came back, c got %d, want 200", code)
	}
	srv.Close()

	if err := os.WriteFile(filepath.Join(dir, leaseFile), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, logs = start()
	defer srv.Close()
	if code := ask(srv, "a", a); code != http.StatusOK {
		t.Errorf("with a damaged lease file, a got %d, want 200", code)
	}
	if !logs.has("taken as no leases held") {
		t.Errorf("the damaged lease file is not logged:\n%s", strings.Join(logs.lines, "\n"))
	}
	// No report is read from the lease file.
	st := &Status{Dir: dir, Log: log.New(&lineLog{}, "", 0)}
	reps, err := st.Reports()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reps {
		if strings.Contains(r.Node, "lease") {
			t.Errorf("report read from the lease file: %+v", r)
		}
	}
}
