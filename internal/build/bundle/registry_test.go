package bundle

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/node/netfetch"
	"github.com/mkimage/mkimage/internal/update"
	"github.com/mkimage/mkimage/internal/update/registry"
	"github.com/mkimage/mkimage/internal/update/registry/registrytest"
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
	key := testKey(t, 1)
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
	_, err = Pull(ctx, c, mustRef(t, reg.Host()+"/fleet/qemu-virt:v1"), filepath.Join(t.TempDir(), "x"), []update.PublicKey{testKey(t, 2).Public()}, f)
	if !errors.Is(err, update.ErrInvalid) {
		t.Errorf("pull with another key: %v, want ErrInvalid", err)
	}
	if got := len(reg.Requests("GET /v2/fleet/qemu-virt/blobs/")) - gets; got != 2 {
		t.Errorf("pull with another key: %d blob GETs, want 2 (config and signature only)", got)
	}
	// A bundle that does not verify is not pushed.
	_, _, err = Push(ctx, c, d1, mustRef(t, reg.Host()+"/fleet/qemu-virt:bad"), []update.PublicKey{testKey(t, 2).Public()}, nil)
	if err == nil || !strings.Contains(err.Error(), "before pushing") {
		t.Errorf("push of a bundle another key signed: %v", err)
	}
	t.Logf("push log:\n%s", log.String())
}
