package netfetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// server serves data at /f; behave decides, per request (numbered from
// 1), how: "ok", "drop" (close after half of what was asked), "stall"
// (send a quarter, then nothing), "norange" (ignore Range), "500",
// "404", "tamper" (a flipped byte), "long" (extra bytes, the length
// said), "longchunked" (extra bytes, no length).
func server(t *testing.T, data []byte, behave func(n int) string) (*httptest.Server, *[]string) {
	var mu sync.Mutex
	var log []string
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		how := behave(n)
		log = append(log, how+" "+r.Header.Get("Range"))
		mu.Unlock()
		body := data
		switch how {
		case "500":
			http.Error(w, "busy", http.StatusInternalServerError)
			return
		case "404":
			http.NotFound(w, r)
			return
		case "tamper":
			body = bytes.Clone(data)
			body[len(body)/2] ^= 1
		case "long", "longchunked":
			body = append(bytes.Clone(data), "extra"...)
		}
		start := 0
		ranged := r.Header.Get("Range") != "" && how != "norange"
		if ranged {
			fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-", &start)
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(body)-1, len(body)))
		}
		body = body[start:]
		if how != "longchunked" { // no length: the reader must notice by itself
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		}
		if ranged {
			w.WriteHeader(http.StatusPartialContent)
		}
		switch how {
		case "drop":
			w.Write(body[:len(body)/2])
			panic(http.ErrAbortHandler) // the connection goes away
		case "stall":
			w.Write(body[:len(body)/4])
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
			return
		}
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv, &log
}

func TestDownload(t *testing.T) {
	data := make([]byte, 3<<20)
	rand.New(rand.NewSource(1)).Read(data)
	sum := sha256.Sum256(data)
	want := Want{Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
	seq := func(s ...string) func(int) string {
		return func(n int) string {
			if n <= len(s) {
				return s[n-1]
			}
			return "ok"
		}
	}
	for _, c := range []struct {
		name    string
		behave  func(int) string
		err     string // "" = success
		log     []string
		partial bool // a .part file is left for the next attempt
	}{
		{name: "ok", behave: seq("ok"), log: []string{"ok "}},
		{name: "drop then resume", behave: seq("drop", "drop"), log: []string{"drop ", "drop bytes=1572864-", "ok bytes=2359296-"}},
		{name: "stall then resume", behave: seq("stall"), log: []string{"stall ", "ok bytes=786432-"}},
		{name: "server errors", behave: seq("500", "500"), log: []string{"500 ", "500 ", "ok "}},
		{name: "no range support", behave: seq("drop", "norange"), log: []string{"drop ", "norange bytes=1572864-"}},
		{name: "not found", behave: seq("404"), err: "404", log: []string{"404 "}},
		{name: "tampered", behave: seq("tamper"), err: "sha256", log: []string{"tamper "}},
		{name: "too long, said", behave: seq("long"), err: "not the file the manifest names", log: []string{"long "}},
		{name: "too long, unsaid", behave: seq("longchunked"), err: "more than the expected", log: []string{"longchunked "}},
		{name: "gives up", behave: func(int) string { return "500" }, err: "500", log: []string{"500 ", "500 ", "500 "}},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv, log := server(t, data, c.behave)
			dst := filepath.Join(t.TempDir(), "f")
			var lines []string
			f := &Fetcher{Stall: 300 * time.Millisecond, Retries: 2, Backoff: time.Millisecond, Log: func(format string, a ...any) {
				lines = append(lines, fmt.Sprintf(format, a...))
			}}
			err := f.Download(context.Background(), srv.URL+"/f", dst, want)
			if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
				t.Fatalf("Download: %v, want error %q", err, c.err)
			}
			if strings.Join(*log, "|") != strings.Join(c.log, "|") {
				t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(*log, "\n"), strings.Join(c.log, "\n"))
			}
			got, rerr := os.ReadFile(dst)
			if c.err == "" && !bytes.Equal(got, data) {
				t.Errorf("dst holds %d bytes (%v), not the data", len(got), rerr)
			}
			if mismatch := c.err == "sha256" || strings.HasPrefix(c.name, "too long"); errors.Is(err, ErrMismatch) != mismatch {
				t.Errorf("errors.Is(err, ErrMismatch) = %v, want %v", !mismatch, mismatch)
			}
			if c.err != "" && rerr == nil {
				t.Errorf("dst written after a failed download")
			}
			if _, err := os.Stat(dst + ".part"); c.err == "" && err == nil {
				t.Error(".part left after success")
			}
			if c.err != "" && c.err != "500" && c.err != "404" {
				if st, err := os.Stat(dst + ".part"); err == nil && st.Size() > 0 {
					t.Errorf("bad content kept in .part (%d bytes)", st.Size())
				}
			}
			if len(*log) > 1 && c.err == "" && len(lines) == 0 {
				t.Error("retries were not logged")
			}
		})
	}
}

// TestDownloadResumesAcrossCalls: a partial file from an attempt that
// was cut off (a power cut, a reboot) is resumed by the next call, and a
// file already complete costs no request.
func TestDownloadResumesAcrossCalls(t *testing.T) {
	data := bytes.Repeat([]byte("mkimage "), 100000)
	sum := sha256.Sum256(data)
	want := Want{Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
	srv, log := server(t, data, func(int) string { return "ok" })
	dst := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(dst+".part", data[:1000], 0o600); err != nil {
		t.Fatal(err)
	}
	f := &Fetcher{}
	if err := f.Download(context.Background(), srv.URL+"/f", dst, want); err != nil {
		t.Fatal(err)
	}
	if err := f.Download(context.Background(), srv.URL+"/f", dst, want); err != nil {
		t.Fatal(err)
	}
	if strings.Join(*log, "|") != "ok bytes=1000-" {
		t.Errorf("requests: %q", *log)
	}
	// A .part longer than the file is not resumed but replaced.
	os.Remove(dst)
	os.WriteFile(dst+".part", append(bytes.Clone(data), 'x'), 0o600)
	if err := f.Download(context.Background(), srv.URL+"/f", dst, want); err != nil {
		t.Fatal(err)
	}
	// A cancelled context stops at once, even while a server stalls.
	srv2, _ := server(t, data, func(int) string { return "stall" })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := (&Fetcher{Stall: time.Hour}).Download(ctx, srv2.URL+"/f", filepath.Join(t.TempDir(), "g"), want)
	if err == nil || time.Since(start) > 5*time.Second {
		t.Errorf("cancelled download: %v after %v", err, time.Since(start))
	}
	for _, w := range []Want{{Size: 1, SHA256: "xyz"}, {Size: -1, SHA256: want.SHA256}} {
		if err := f.Download(context.Background(), srv.URL+"/f", dst+"2", w); err == nil {
			t.Errorf("Download with %+v: no error", w)
		}
	}
}
