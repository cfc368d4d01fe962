package apply

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/build/bundle"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/fstree/fstreetest"
	"github.com/mkimage/mkimage/internal/update"
	"github.com/mkimage/mkimage/internal/update/registry"
	"github.com/mkimage/mkimage/internal/update/registry/registrytest"
	"github.com/mkimage/mkimage/internal/update/updatetest"
)

// recorder is the node's HTTP transport, noting each request (method,
// path, Range) the real registry is sent. With cut set to a blob digest,
// it kills the registry once half of that blob's first GET has arrived
// and starts it again a moment later: a registry restarting in the
// middle of a payload.
type recorder struct {
	reg  *registrytest.Registry
	mu   sync.Mutex
	reqs []string
	cut  string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, strings.TrimSpace(req.Method+" "+req.URL.Path+" "+req.Header.Get("Range")))
	cut := r.cut != "" && strings.HasSuffix(req.URL.Path, "/blobs/"+r.cut) && req.Method == http.MethodGet
	if cut {
		r.cut = ""
	}
	r.mu.Unlock()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil && cut && resp.StatusCode == http.StatusOK {
		resp.Body = &killer{ReadCloser: resp.Body, half: resp.ContentLength / 2, reg: r.reg}
	}
	return resp, err
}

// count is the requests whose line contains s.
func (r *recorder) count(s string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, q := range r.reqs {
		if strings.Contains(q, s) {
			n++
		}
	}
	return n
}

type killer struct {
	io.ReadCloser
	half, n int64
	reg     *registrytest.Registry
	done    bool
}

func (k *killer) Read(p []byte) (int, error) {
	n, err := k.ReadCloser.Read(p)
	k.n += int64(n)
	if k.n >= k.half && !k.done {
		k.done = true
		k.reg.Kill()
		go func() {
			time.Sleep(300 * time.Millisecond)
			k.reg.Restart()
		}()
	}
	return n, err
}

// ociEnv is env with a registry the bundles are pushed to.
type ociEnv struct {
	*env
	reg   *registrytest.Registry
	rec   *recorder
	login registry.Credentials // for pushes; nil: anonymous
}

func newOCIEnv(t *testing.T) *ociEnv {
	return newOCIEnvWith(t, registrytest.Options{}, nil)
}

func newOCIEnvWith(t *testing.T, ro registrytest.Options, login registry.Credentials) *ociEnv {
	e := &ociEnv{env: newEnv(t), reg: registrytest.Start(t, ro), login: login}
	e.rec = &recorder{reg: e.reg}
	e.push(t, "v1")
	return e
}

// push pushes the bundle directory name under the tag name and returns
// the reference's digest form.
func (e *ociEnv) push(t *testing.T, name string) string {
	t.Helper()
	ref, err := registry.ParseRef(e.reg.Host() + "/fleet/node:" + name)
	if err != nil {
		t.Fatal(err)
	}
	digest, _, err := bundle.Push(context.Background(), registry.New(e.login, nil, false), filepath.Join(e.bundles, name), ref, nil, nil)
	if err != nil && !strings.Contains(err.Error(), "before pushing") {
		t.Fatal(err)
	}
	if err != nil {
		// Signed by another key than e.key: pushed as it is, for tests
		// of what the node refuses.
		keys := []update.PublicKey{updatetest.Key(2).Public(), e.key.Public()}
		if digest, _, err = bundle.Push(context.Background(), registry.New(e.login, nil, false), filepath.Join(e.bundles, name), ref, keys, nil); err != nil {
			t.Fatal(err)
		}
	}
	return e.reg.Host() + "/fleet/node@" + digest
}

func (e *ociEnv) opts(ref, running string) Options {
	o := e.env.opts("", running)
	o.Source = registry.Scheme + ref
	o.Fetcher.Client = &http.Client{Transport: e.rec}
	return o
}

func (e *ociEnv) apply(t *testing.T, ref, running string) (Result, error) {
	t.Helper()
	o := e.opts(ref, running)
	o.Log = t.Logf
	return Apply(context.Background(), o)
}

// TestApplyOCI: versions applied from a real registry, by tag and by
// digest, download what an HTTP bundle directory would: the full root
// first, then the incremental stream and the new kernel only.
func TestApplyOCI(t *testing.T) {
	e := newOCIEnv(t)
	m2 := e.write(t, "v2", version(t, 2), e.key)
	e.push(t, "v2")
	r, err := e.apply(t, e.reg.Host()+"/fleet/node:v2", e.v1.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Full || r.ID != m2.ID {
		t.Errorf("v2: %+v, want a full receive", r)
	}
	e.checkApplied(t, m2, "version 2\n")
	if err := Commit(e.boot, m2.ID); err != nil {
		t.Fatal(err)
	}

	m3 := e.write(t, "v3", version(t, 3), e.key, bundle.Parent{ID: m2.ID, Root: version(t, 2).Root})
	byDigest := e.push(t, "v3")
	before := len(e.rec.reqs)
	r, err = e.apply(t, byDigest, m2.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.Full || r.Parent != m2.ID {
		t.Errorf("v3: %+v, want incremental from v2", r)
	}
	if want := payloadSize(m3, update.RootFrom(m2.ID)) + payloadSize(m3, update.BootKernel); r.Bytes != want {
		t.Errorf("v3: downloaded %d bytes, want %d (the incremental stream and the kernel)", r.Bytes, want)
	}
	e.checkApplied(t, m3, "version 3\n")
	// Blob GETs: config, signature, stream, kernel; root.full never.
	e.rec.mu.Lock()
	reqs := e.rec.reqs[before:]
	e.rec.mu.Unlock()
	gets := 0
	for _, q := range reqs {
		if strings.HasPrefix(q, "GET ") && strings.Contains(q, "/blobs/") {
			gets++
		}
		for _, p := range m3.Payloads {
			if p.Name == update.RootFull && strings.Contains(q, p.SHA256) {
				t.Errorf("v3: root.full fetched: %s", q)
			}
		}
	}
	if gets != 4 {
		t.Errorf("v3: %d blob GETs, want 4:\n%s", gets, strings.Join(reqs, "\n"))
	}
}

// TestOCIRestarted: the registry killed half-way through root.full and
// started again: the same Apply resumes the download with a Range
// request and completes.
func TestOCIRestarted(t *testing.T) {
	e := newOCIEnv(t)
	// Bigger than what the sockets buffer on loopback, which a killed
	// registry's kernel still delivers.
	v := version(t, 2)
	put(t, v.Root, "bin/big", &fstree.Inode{Mode: fstree.ModeRegular | 0o644, Content: fstreetest.Random(2, 32<<20), Mtime: epoch, Atime: epoch, Ctime: epoch})
	m2 := e.write(t, "v2", v, e.key)
	e.push(t, "v2")
	for _, p := range m2.Payloads {
		if p.Name == update.RootFull {
			e.rec.cut = registry.Digest(p.SHA256)
		}
	}
	o := e.opts(e.reg.Host()+"/fleet/node:v2", e.v1.ID)
	o.Log = t.Logf
	o.Fetcher.Backoff = 200 * time.Millisecond
	o.Fetcher.Log = t.Logf
	if _, err := Apply(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if e.rec.cut != "" {
		t.Fatal("the registry was never killed")
	}
	if n := e.rec.count("/blobs/" + e.rec.cutDigest(m2) + " bytes="); n == 0 {
		t.Errorf("root.full not resumed with a Range request:\n%s", strings.Join(e.rec.reqs, "\n"))
	}
	e.checkApplied(t, m2, "version 2\n")
}

func (r *recorder) cutDigest(m update.Manifest) string {
	for _, p := range m.Payloads {
		if p.Name == update.RootFull {
			return registry.Digest(p.SHA256)
		}
	}
	return ""
}

// TestOCIRefuse: a manifest signed by another key is refused before any
// payload is fetched; a payload blob changed in the registry's storage
// is refused and what was fetched of it removed; neither changes the
// boot state.
func TestOCIRefuse(t *testing.T) {
	e := newOCIEnv(t)
	before := e.state(t)

	e.write(t, "evil", version(t, 2), updatetest.Key(2))
	e.push(t, "evil")
	n := e.rec.count("/blobs/")
	_, err := e.apply(t, e.reg.Host()+"/fleet/node:evil", e.v1.ID)
	if !errors.Is(err, update.ErrInvalid) {
		t.Errorf("another key: %v, want ErrInvalid", err)
	}
	if got := e.rec.count("/blobs/") - n; got != 2 {
		t.Errorf("another key: %d blob requests, want 2 (signature and manifest.json only):\n%s", got, strings.Join(e.rec.reqs, "\n"))
	}

	m2 := e.write(t, "v2", version(t, 2), e.key)
	e.push(t, "v2")
	for _, p := range m2.Payloads {
		if p.Name == update.BootKernel {
			e.reg.Corrupt(p.SHA256)
		}
	}
	_, err = e.apply(t, e.reg.Host()+"/fleet/node:v2", e.v1.ID)
	if !errors.Is(err, update.ErrInvalid) || !strings.Contains(err.Error(), update.BootKernel) {
		t.Errorf("tampered kernel blob: %v, want ErrInvalid naming %s", err, update.BootKernel)
	}
	if st := e.state(t); st != before {
		t.Errorf("state %+v, was %+v", st, before)
	}
	if _, err := os.Stat(filepath.Join(e.env.opts("", "").Incoming, m2.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("downloads of a refused version kept (%v)", err)
	}
}

// TestApplyOCILogin: a registry that wants a login (htpasswd, Basic):
// without one the apply fails saying so and changes nothing; with
// Options.Credentials (the node's registry-auth file) it installs.
func TestApplyOCILogin(t *testing.T) {
	login := func(string) (string, string, error) { return registrytest.User, registrytest.Password, nil }
	e := newOCIEnvWith(t, registrytest.Options{Users: []string{registrytest.HTPasswd}}, login)
	m2 := e.write(t, "v2", version(t, 2), e.key)
	e.push(t, "v2")
	before := e.state(t)
	ref := e.reg.Host() + "/fleet/node:v2"
	if _, err := e.apply(t, ref, e.v1.ID); err == nil || !strings.Contains(err.Error(), "log in") {
		t.Errorf("anonymous: %v, want an error saying to log in", err)
	}
	if st := e.state(t); st != before {
		t.Errorf("state %+v, was %+v", st, before)
	}
	o := e.opts(ref, e.v1.ID)
	o.Log, o.Credentials = t.Logf, login
	if _, err := Apply(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	e.checkApplied(t, m2, "version 2\n")
}
