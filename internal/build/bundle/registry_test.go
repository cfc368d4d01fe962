package bundle

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/node/netfetch"
	"github.com/mkimage/mkimage/internal/update"
	"github.com/mkimage/mkimage/internal/update/registry"
	"github.com/mkimage/mkimage/internal/update/registry/registrytest"
	"github.com/mkimage/mkimage/internal/update/updatetest"
)

func mustRef(t testing.TB, s string) registry.Ref {
	t.Helper()
	r, err := registry.ParseRef(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestPushPull: a bundle pushed to a real registry and pulled back is
// byte for byte the same; v2 pushed after v1 uploads only its new blobs;
// a pull checks the signature and refuses a key it was not given.
func TestPushPull(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ctx := context.Background()
	key := updatetest.Key(1)
	keys := []update.PublicKey{key.Public()}
	d1, d2 := filepath.Join(t.TempDir(), "v1"), filepath.Join(t.TempDir(), "v2")
	parent := v1(t)
	write(t, d1, parent, key)
	pid, _ := parent.ID()
	m2 := write(t, d2, v2(t), key, Parent{ID: pid, Root: parent.Root})
	c := registry.New(nil, nil, false)

	var log bytes.Buffer
	_, pushed, err := Push(ctx, c, d1, mustRef(t, reg.Host()+"/fleet/qemu-virt:v1"), keys, &log)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pushed {
		if !p.New {
			t.Errorf("v1: %s was in an empty registry", p.Name)
		}
	}
	puts := len(reg.Requests("PUT /v2/fleet/qemu-virt/blobs/uploads/"))
	if puts != len(pushed) {
		t.Errorf("%d blob uploads, want %d", puts, len(pushed))
	}

	// v2 has a new manifest, signature, root.full, root.from-v1 and
	// kernel; its initrd and dtb are v1's.
	_, pushed2, err := Push(ctx, c, d2, mustRef(t, reg.Host()+"/fleet/qemu-virt:v2"), keys, &log)
	if err != nil {
		t.Fatal(err)
	}
	var fresh, kept []string
	for _, p := range pushed2 {
		if p.New {
			fresh = append(fresh, p.Name)
		} else {
			kept = append(kept, p.Name)
		}
	}
	slices.Sort(kept)
	if want := []string{update.BootDTB, update.BootInitrd}; !slices.Equal(kept, want) {
		t.Errorf("v2: blobs already there %v, want %v (uploaded %v)", kept, want, fresh)
	}
	if got := len(reg.Requests("PUT /v2/fleet/qemu-virt/blobs/uploads/")) - puts; got != len(fresh) {
		t.Errorf("v2: %d blob uploads, want %d", got, len(fresh))
	}

	// Pull v2 back, by tag and by digest.
	out := filepath.Join(t.TempDir(), "pulled")
	f := &netfetch.Fetcher{Backoff: time.Millisecond}
	m, err := Pull(ctx, c, mustRef(t, reg.Host()+"/fleet/qemu-virt:v2"), out, keys, f)
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != m2.ID {
		t.Errorf("pulled version %s, want %s", m.ID, m2.ID)
	}
	if got, want := files(t, out), files(t, d2); !slices.Equal(got, want) {
		t.Errorf("pulled %v, want %v", got, want)
	}
	for _, name := range files(t, d2) {
		if !bytes.Equal(readFile(t, filepath.Join(out, name)), readFile(t, filepath.Join(d2, name))) {
			t.Errorf("%s differs after push and pull", name)
		}
	}
	if _, err := Verify(out, keys); err != nil {
		t.Error(err)
	}

	// Another key: refused before any payload is fetched.
	gets := len(reg.Requests("GET /v2/fleet/qemu-virt/blobs/"))
	_, err = Pull(ctx, c, mustRef(t, reg.Host()+"/fleet/qemu-virt:v1"), filepath.Join(t.TempDir(), "x"), []update.PublicKey{updatetest.Key(2).Public()}, f)
	if !errors.Is(err, update.ErrInvalid) {
		t.Errorf("pull with another key: %v, want ErrInvalid", err)
	}
	if got := len(reg.Requests("GET /v2/fleet/qemu-virt/blobs/")) - gets; got != 2 {
		t.Errorf("pull with another key: %d blob GETs, want 2 (config and signature only)", got)
	}
	// A bundle that does not verify is not pushed.
	_, _, err = Push(ctx, c, d1, mustRef(t, reg.Host()+"/fleet/qemu-virt:bad"), []update.PublicKey{updatetest.Key(2).Public()}, nil)
	if err == nil || !strings.Contains(err.Error(), "before pushing") {
		t.Errorf("push of a bundle another key signed: %v", err)
	}
	t.Logf("push log:\n%s", log.String())
}

// rangeRecorder is the client's transport, noting the Range of each
// request.
type rangeRecorder struct {
	mu     sync.Mutex
	ranges []string
}

func (r *rangeRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.ranges = append(r.ranges, req.Header.Get("Range"))
	r.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

// TestPullResumes: what an earlier pull left beside DIR (a third of
// root.full) is resumed, not fetched again; a failed pull leaves no DIR.
func TestPullResumes(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ctx := context.Background()
	key := updatetest.Key(1)
	keys := []update.PublicKey{key.Public()}
	src := filepath.Join(t.TempDir(), "v1")
	m := write(t, src, v1(t), key)
	ref := mustRef(t, reg.Host()+"/fleet/qemu-virt:v1")
	if _, _, err := Push(ctx, registry.New(nil, nil, false), src, ref, keys, nil); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "pulled")
	f := &netfetch.Fetcher{Backoff: time.Millisecond, Retries: -1}

	// The registry down: the pull fails and leaves nothing at out.
	rec := &rangeRecorder{}
	c := registry.New(nil, rec, false)
	reg.Kill()
	if _, err := Pull(ctx, c, ref, out, keys, f); err == nil {
		t.Fatal("pull from a dead registry: no error")
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed pull left %s (%v)", out, err)
	}
	reg.Restart()

	// A third of root.full, as a cut pull leaves it.
	staging := filepath.Join(filepath.Dir(out), ".pulled.pull")
	whole := readFile(t, filepath.Join(src, update.RootFull))
	if err := os.MkdirAll(staging, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(staging, update.RootFull+".part"), whole[:len(whole)/3], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Pull(ctx, c, ref, out, keys, f); err != nil {
		t.Fatal(err)
	}
	if want := "bytes=" + strconv.Itoa(len(whole)/3) + "-"; !slices.Contains(rec.ranges, want) {
		t.Errorf("no request with Range %s: %q", want, rec.ranges)
	}
	if _, err := Verify(out, keys); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(staging); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("staging %s left (%v)", staging, err)
	}

	// The kernel's blob changed in the registry's storage: refused,
	// nothing written.
	for _, p := range m.Payloads {
		if p.Name == update.BootKernel {
			reg.Corrupt(p.SHA256)
		}
	}
	other := filepath.Join(t.TempDir(), "tampered")
	if _, err := Pull(ctx, c, ref, other, keys, f); !errors.Is(err, update.ErrInvalid) || !strings.Contains(err.Error(), update.BootKernel) {
		t.Errorf("tampered kernel blob: %v, want ErrInvalid naming %s", err, update.BootKernel)
	}
	if _, err := os.Stat(other); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused pull left %s (%v)", other, err)
	}
}
