package netserve

import (
	"bytes"
	"context"
	"encoding/json"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/update"
	"github.com/mkimage/mkimage/internal/update/updatetest"
)

// post is a signed report of node with good version good.
func post(t *testing.T, path, node, good string, k update.PrivateKey) *http.Request {
	t.Helper()
	body, key, sig, err := update.SignReport(update.Report{Node: node, Time: time.Now(), Status: update.Status{Running: good, Good: good}}, k)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	r.Header.Set(update.ReportKeyHeader, key)
	r.Header.Set(update.ReportSignatureHeader, sig)
	return r
}

// TestStatusHandler runs reports in order against one status directory:
// what each is answered, what is logged, and which report is kept.
func TestStatusHandler(t *testing.T) {
	const v1, v2, v3 = "1111111111111111", "2222222222222222", "3333333333333333"
	sdir := t.TempDir()
	logs := &lineLog{}
	h := &HTTP{Files: Files{Dir: t.TempDir()}, Status: &Status{Dir: sdir, Log: log.New(logs, "", 0)}, Log: log.New(logs, "", 0)}
	a, b := updatetest.Key(1), updatetest.Key(2)
	for _, tt := range []struct {
		name string
		req  func(t *testing.T) *http.Request
		code int
		body string // in the answer
		log  string // in the log
		good string // node-01's stored good version afterwards ("" for no report)
	}{
		{name: "first report pins the key",
			req:  func(t *testing.T) *http.Request { return post(t, "/status/node-01", "node-01", v1, a) },
			code: http.StatusNoContent, log: "node-01's first report: its key " + a.Public().String() + " is pinned", good: v1},
		{name: "next report by the pinned key",
			req:  func(t *testing.T) *http.Request { return post(t, "/status/node-01", "node-01", v2, a) },
			code: http.StatusNoContent, good: v2},
		{name: "another key after pinning",
			req:  func(t *testing.T) *http.Request { return post(t, "/status/node-01", "node-01", v3, b) },
			code: http.StatusForbidden, body: "remove node-01.pub from the build host's status directory",
			log: "node-01 is pinned to " + a.Public().String(), good: v2},
		{name: "bad signature",
			req: func(t *testing.T) *http.Request {
				r := post(t, "/status/node-01", "node-01", v3, a)
				r.Header.Set(update.ReportSignatureHeader, post(t, "/status/node-01", "node-01", v1, a).Header.Get(update.ReportSignatureHeader))
				return r
			},
			code: http.StatusForbidden, body: "not one of the report's body", log: `refused a report for "node-01"`, good: v2},
		{name: "no signature",
			req: func(t *testing.T) *http.Request {
				r := post(t, "/status/node-01", "node-01", v3, a)
				r.Header.Del(update.ReportSignatureHeader)
				return r
			},
			code: http.StatusBadRequest, body: "Mkimage-Report-Signature", good: v2},
		{name: "oversize body",
			req: func(t *testing.T) *http.Request {
				big := bytes.Repeat([]byte(" "), update.MaxReportSize+1)
				return httptest.NewRequest(http.MethodPost, "/status/node-01", bytes.NewReader(big))
			},
			code: http.StatusRequestEntityTooLarge, body: "report over 65536 bytes", good: v2},
		{name: "bad node name",
			req:  func(t *testing.T) *http.Request { return post(t, "/status/Node_01", "node-01", v3, a) },
			code: http.StatusBadRequest, body: `node name "Node_01"`, good: v2},
		{name: "node name with a slash",
			req:  func(t *testing.T) *http.Request { return post(t, "/status/..%2Fx", "node-01", v3, a) },
			code: http.StatusBadRequest, body: `node name "../x"`, good: v2},
		{name: "another node's report",
			req:  func(t *testing.T) *http.Request { return post(t, "/status/node-01", "node-02", v3, b) },
			code: http.StatusBadRequest, body: `the report is "node-02"'s, posted as "node-01"'s`, good: v2},
		{name: "second node pins its own key",
			req:  func(t *testing.T) *http.Request { return post(t, "/status/node-02", "node-02", v3, b) },
			code: http.StatusNoContent, good: v2},
		{name: "GET lists the reports",
			req:  func(*testing.T) *http.Request { return httptest.NewRequest(http.MethodGet, "/status/", nil) },
			code: http.StatusOK, body: `"node": "node-02"`, good: v2},
		{name: "GET one report",
			req:  func(*testing.T) *http.Request { return httptest.NewRequest(http.MethodGet, "/status/node-02", nil) },
			code: http.StatusOK, body: `"good": "` + v3, good: v2},
		{name: "GET a node that never reported",
			req:  func(*testing.T) *http.Request { return httptest.NewRequest(http.MethodGet, "/status/node-03", nil) },
			code: http.StatusNotFound, body: "no report from node-03", good: v2},
		{name: "PUT",
			req:  func(*testing.T) *http.Request { return httptest.NewRequest(http.MethodPut, "/status/node-01", nil) },
			code: http.StatusMethodNotAllowed, good: v2},
		{name: "reflashed node after its pin was removed",
			req: func(t *testing.T) *http.Request {
				if err := os.Remove(filepath.Join(sdir, "node-01.pub")); err != nil {
					t.Fatal(err)
				}
				return post(t, "/status/node-01", "node-01", v3, b)
			},
			code: http.StatusNoContent, log: "node-01's first report: its key " + b.Public().String(), good: v3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, tt.req(t))
			if w.Code != tt.code || !strings.Contains(w.Body.String(), tt.body) {
				t.Errorf("answer %d %q, want %d with %q", w.Code, w.Body, tt.code, tt.body)
			}
			if tt.log != "" && !logs.has(tt.log) {
				t.Errorf("log lacks %q: %q", tt.log, logs.lines)
			}
			rep, err := h.Status.read("node-01")
			if err != nil || rep.Status.Good != tt.good || rep.Received.IsZero() || !strings.HasPrefix(rep.Key, "mkimage-ed25519-public ") {
				t.Errorf("node-01's stored report: %+v, %v; want good %s", rep, err, tt.good)
			}
		})
	}
	// The list is every node's last report, by name; pins and
	// temporaries are not reports.
	os.WriteFile(filepath.Join(sdir, ".node-01.json.tmp-123"), []byte("{"), 0o644)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/status/", nil))
	var reps []update.Received
	if err := json.Unmarshal(w.Body.Bytes(), &reps); err != nil || len(reps) != 2 || reps[0].Node != "node-01" || reps[1].Node != "node-02" || reps[0].Status.Good != v3 {
		t.Errorf("list: %v, %+v", err, reps)
	}
}

// TestStatusOff: without a status directory a POST is not found, and the
// files are served as before.
func TestStatusOff(t *testing.T) {
	dir, _ := tree(t)
	h := &HTTP{Files: Files{Dir: dir}, Log: log.New(&lineLog{}, "", 0)}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, post(t, "/status/node-01", "node-01", "1111111111111111", updatetest.Key(1)))
	if w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), "--status-dir") {
		t.Errorf("POST: %d %q", w.Code, w.Body)
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/pxelinux.cfg/default", nil))
	if w.Code != http.StatusOK {
		t.Errorf("GET a file: %d", w.Code)
	}
}

// TestFetchStatus: the build host's client reads the list a server
// keeps, and says what to do when the server takes no reports.
func TestFetchStatus(t *testing.T) {
	sdir := t.TempDir()
	h := &HTTP{Files: Files{Dir: t.TempDir()}, Status: &Status{Dir: sdir, Log: log.New(&lineLog{}, "", 0)}, Log: log.New(&lineLog{}, "", 0)}
	srv := httptest.NewServer(h)
	defer srv.Close()
	reps, err := FetchStatus(context.Background(), srv.URL)
	if err != nil || reps == nil || len(reps) != 0 {
		t.Fatalf("no reports yet: %+v, %v", reps, err)
	}
	req := post(t, srv.URL+"/status/node-01", "node-01", "1111111111111111", updatetest.Key(1))
	req.RequestURI = "" // a server's request made a client's
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST: %v, %v", resp, err)
	}
	resp.Body.Close()
	reps, err = FetchStatus(context.Background(), srv.URL+"/")
	if err != nil || len(reps) != 1 || reps[0].Node != "node-01" || reps[0].From == "" {
		t.Errorf("%+v, %v", reps, err)
	}

	off := httptest.NewServer(&HTTP{Files: Files{Dir: t.TempDir()}, Log: log.New(&lineLog{}, "", 0)})
	defer off.Close()
	if _, err := FetchStatus(context.Background(), off.URL); err == nil || !strings.Contains(err.Error(), "--status-dir") {
		t.Errorf("server without --status-dir: %v", err)
	}
	if _, err := FetchStatus(context.Background(), "build-host:8080"); err == nil || !strings.Contains(err.Error(), "want http://HOST[:PORT]") {
		t.Errorf("URL without scheme: %v", err)
	}
}
