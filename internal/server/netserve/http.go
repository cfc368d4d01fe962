package netserve

import (
	"context"
	"errors"
	"io/fs"
	"log"
	"net"
	"net/http"
	"strings"
	"time"
)

// HTTP serves Files read-only (GET and HEAD, with Range requests, which
// the netboot fetchers use to read only the mapped blocks of an image)
// and, if Status is set, takes the nodes' status reports under
// StatusPath.
type HTTP struct {
	Files  Files
	Status *Status
	Log    *log.Logger
}

type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (c *countingWriter) WriteHeader(s int) { c.status = s; c.ResponseWriter.WriteHeader(s) }
func (c *countingWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// ServeHTTP answers one request and logs one line.
func (h *HTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	cw := &countingWriter{ResponseWriter: w}
	h.serve(cw, r)
	rng := ""
	if v := r.Header.Get("Range"); v != "" {
		rng = " " + v
	}
	h.Log.Printf("http: %s %s %q%s: %d, %d bytes in %v", r.RemoteAddr, r.Method, r.URL.Path, rng, cw.status, cw.n, time.Since(start).Round(time.Millisecond))
}

func (h *HTTP) serve(w *countingWriter, r *http.Request) {
	if node, ok := strings.CutPrefix(r.URL.Path, LeasePath); ok && h.Status != nil {
		h.Status.serveLease(w, r, node)
		return
	}
	if node, ok := strings.CutPrefix(r.URL.Path, StatusPath); ok {
		if h.Status != nil {
			h.Status.serve(w, r, node)
			return
		}
		if r.Method == http.MethodPost {
			http.Error(w, "this server takes no status reports (run mkimage serve with --status-dir DIR)", http.StatusNotFound)
			return
		}
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "read-only server", http.StatusMethodNotAllowed)
		return
	}
	f, fi, err := h.Files.Open(r.URL.Path)
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist):
		http.Error(w, "not found", http.StatusNotFound)
		return
	case errors.Is(err, ErrOutside), errors.Is(err, fs.ErrPermission):
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	default:
		http.Error(w, "cannot read file", http.StatusInternalServerError)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
	if w.status == 0 {
		w.status = http.StatusOK
	}
}

// Serve answers HTTP on l until ctx ends, then shuts down (waiting up to
// 5 s for transfers in flight).
func (h *HTTP) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: h.Log}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		<-done
		return nil
	}
}
