package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/update"
)

// TestUpdateStatus: one row per node from the server's reports: its
// versions, the tries left of one being tried, its bad versions with why
// the newest failed, and how long ago it reported.
func TestUpdateStatus(t *testing.T) {
	const v1, v2, v3, v4 = "1111111111111111", "2222222222222222", "3333333333333333", "4444444444444444"
	now := time.Now()
	reps := []update.Received{
		{Report: update.Report{Node: "node-01", Status: update.Status{Running: v2, Good: v2, Versions: []update.Version{
			{ID: v1, Created: 1, State: "old"}, {ID: v2, Created: 2, State: "good", Running: true},
		}}}, Received: now.Add(-90 * time.Second)},
		{Report: update.Report{Node: "node-02", Status: update.Status{Running: v4, Good: v2, Trying: v4, Tries: 2, Versions: []update.Version{
			{ID: v2, Created: 2, State: "good"}, {ID: v3, Created: 3, State: "bad", Why: "it did not pass its checks in 3 boots"},
			{ID: v4, Created: 4, State: "trying", Running: true},
		}}}, Received: now.Add(-3 * time.Hour)},
		{Report: update.Report{Node: "node-03", Status: update.Status{Running: v2, Good: v2, Versions: []update.Version{
			{ID: v2, Created: 2, State: "good", Running: true},
			{ID: v3, Created: 3, State: "bad", Why: "it did not pass its checks in 3 boots"},
			{ID: v4, Created: 4, State: "bad", Why: "boot 3 of 3: health check 50-app failed: exit status 1 (app not up)"},
		}}}, Received: now.Add(-50 * time.Hour)},
	}
	var list []update.Received
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status/" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(list)
	}))
	defer srv.Close()

	list = reps
	rc, out, errOut := capture(t, "update", "status", "--server", srv.URL)
	if rc != 0 {
		t.Fatalf("exit %d: %s", rc, errOut)
	}
	t.Logf("\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := [][]string{
		{"NODE", "RUNNING", "GOOD", "TRYING", "SEEN", "BAD"},
		{"node-01", v2, v2, "-", "1m ago", "-"},
		{"node-02", v4, v2, v4 + " (2 left)", "3h ago", v3 + ": it did not pass its checks in 3 boots"},
		{"node-03", v2, v2, "-", "2d ago", v3 + ", " + v4 + ": boot 3 of 3: health check 50-app failed: exit status 1 (app not up)"},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d", len(lines), len(want))
	}
	col := strings.Index(lines[0], "BAD")
	for i, w := range want {
		// Columns are aligned: each row's bad versions start under BAD.
		if !strings.HasPrefix(lines[i][col:], w[len(w)-1]) {
			t.Errorf("line %d: %q, want BAD column %q", i, lines[i], w[len(w)-1])
		}
		if got := strings.Join(strings.Fields(lines[i][:col]), " "); got != strings.Join(w[:len(w)-1], " ") {
			t.Errorf("line %d: %q, want %q", i, got, w[:len(w)-1])
		}
	}

	rc, out, _ = capture(t, "update", "status", "--server", srv.URL, "--json")
	var got []update.Received
	if err := json.Unmarshal([]byte(out), &got); rc != 0 || err != nil || len(got) != 3 || got[2].Status.Versions[2].Why != reps[2].Status.Versions[2].Why {
		t.Errorf("--json: exit %d, %v, %+v", rc, err, got)
	}

	list = nil
	if rc, out, _ = capture(t, "update", "status", "--server", srv.URL); rc != 0 || !strings.Contains(out, "no node has reported yet") {
		t.Errorf("no reports: exit %d, %q", rc, out)
	}

	for _, tt := range []struct {
		args   []string
		rc     int
		errOut string
	}{
		{[]string{"update", "status"}, 2, "--server URL is required"},
		{[]string{"update", "status", "--server", srv.URL, "node-01"}, 2, `unexpected argument "node-01"`},
		{[]string{"update", "status", "--server", srv.URL + "/nothing"}, 1, "404 Not Found"},
	} {
		if rc, _, errOut := capture(t, tt.args...); rc != tt.rc || !strings.Contains(errOut, tt.errOut) {
			t.Errorf("mkimage %s: exit %d, %q; want %d, %q", strings.Join(tt.args, " "), rc, errOut, tt.rc, tt.errOut)
		}
	}
}
