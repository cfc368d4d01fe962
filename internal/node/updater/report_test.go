package updater

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/bootstate"
	"github.com/mkimage/mkimage/internal/update"
)

// reportCard is a card running its good version, named node-07, whose
// root names statusURL ("" for none); logs collects its log lines.
func reportCard(t *testing.T, statusURL string) (c *Card, logs *[]string) {
	t.Helper()
	const good = "1111111111111111"
	old, oldTimeout := hostname, reportTimeout
	hostname = func() (string, error) { return "node-07", nil }
	reportTimeout = 500 * time.Millisecond
	t.Cleanup(func() { hostname, reportTimeout = old, oldTimeout })
	var mu sync.Mutex
	logs = new([]string)
	c = &Card{Root: t.TempDir(), Top: t.TempDir(), Boot: t.TempDir(), Running: good, Log: func(f string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		*logs = append(*logs, fmt.Sprintf(f, a...))
		t.Logf(f, a...)
	}}
	if err := bootstate.Write(c.Boot, bootstate.State{Good: good, Try: good}); err != nil {
		t.Fatal(err)
	}
	if statusURL != "" {
		writeFile(t, filepath.Join(c.Root, StatusURLFile), statusURL+"\n", 0o644)
	}
	return c, logs
}

// TestReport: the report is signed by the node's key, made at the first
// report (mode 0600) and the same at the next; the server verifies it.
func TestReport(t *testing.T) {
	var mu sync.Mutex
	var keys []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rep, k, err := update.VerifyReport(body, r.Header.Get(update.ReportKeyHeader), r.Header.Get(update.ReportSignatureHeader))
		if err != nil || r.Method != http.MethodPost || r.URL.Path != "/fleet/status/node-07" || rep.Node != "node-07" || rep.Status.Good != "1111111111111111" {
			t.Errorf("%s %s: %+v, %v", r.Method, r.URL.Path, rep, err)
			http.Error(w, "no", http.StatusBadRequest)
			return
		}
		mu.Lock()
		keys = append(keys, k.String())
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	c, _ := reportCard(t, "")
	for range 2 {
		if err := c.Report(context.Background(), srv.URL+"/fleet"); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(c.Top, ReportKeyFile)
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("report key %s: %v, mode %v", p, err, st.Mode())
	}
	k, err := update.ReadPrivateKey(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0] != keys[1] || keys[0] != k.Public().String() || !strings.HasSuffix(keys[0], " status reports of node-07") {
		t.Errorf("reports signed by %q, key file holds %s", keys, k.Public())
	}
	pub, err := os.ReadFile(p + ".pub")
	if err != nil || strings.TrimSpace(string(pub)) != k.Public().String() {
		t.Errorf("%s.pub: %q, %v", p, pub, err)
	}

	// A report key others may read is refused, as the signing key is.
	os.Chmod(p, 0o644)
	if err := c.Report(context.Background(), srv.URL+"/fleet"); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("report with a readable key: %v", err)
	}
}

// TestReportFailureIsNoFailure: a check (and so an apply) reports to the
// build host in the root's status-url, and a build host that is down
// (tried again until the timeout), refuses or is not named fails
// neither; a report by hand says why.
func TestReportFailureIsNoFailure(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	refuses := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "node-07 is pinned to another key", http.StatusForbidden)
	}))
	defer refuses.Close()
	for _, tt := range []struct {
		name, url, log string
	}{
		{"down", down.URL, "connection refused"},
		{"refuses", refuses.URL, "403 Forbidden: node-07 is pinned to another key"},
		{"bad URL", "build-host:8080", "want http://HOST[:PORT]"},
		{"none", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, logs := reportCard(t, tt.url)
			if _, err := c.Check(context.Background(), CheckOptions{}); err != nil {
				t.Fatalf("Check: %v", err)
			}
			found := false
			for _, l := range *logs {
				found = found || strings.Contains(l, "status report: ") && strings.Contains(l, tt.log)
			}
			if found != (tt.log != "") {
				t.Errorf("log %q, want a status report line with %q", *logs, tt.log)
			}
			if tt.url != "" {
				if err := c.Report(context.Background(), c.StatusURL()); err == nil || !strings.Contains(err.Error(), tt.log) {
					t.Errorf("Report: %v, want %q", err, tt.log)
				}
			}
		})
	}
}
