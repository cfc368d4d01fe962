package updater

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/cluster/plan"
	"github.com/mkimage/mkimage/internal/node/apply"
	"github.com/mkimage/mkimage/internal/server/netserve"
	"github.com/mkimage/mkimage/internal/update"
	"github.com/mkimage/mkimage/internal/update/registry"
	"github.com/mkimage/mkimage/internal/update/registry/registrytest"
	"github.com/mkimage/mkimage/internal/update/updatetest"
)

const chVersion = "2222222222222222"

func testChannel(seq uint64, open bool) update.Channel {
	return update.Channel{Format: update.ChannelFormat, Name: "stable", Sequence: seq, Version: chVersion,
		Source: "http://build-host:8080/bundles/v2/", MaxRebooting: 2,
		Waves: []update.Wave{{Name: "workers", Roles: []string{"worker"}, Fraction: 1, Open: open}}}
}

// channelServer serves whatever channel file is put in *file.
func channelServer(t *testing.T) (*httptest.Server, *[]byte, *sync.Mutex) {
	var mu sync.Mutex
	file := new([]byte)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if *file == nil {
			http.NotFound(w, r)
			return
		}
		w.Write(*file)
	}))
	t.Cleanup(srv.Close)
	return srv, file, &mu
}

// TestApplyChannel runs a node (node-07, a worker running version 1111…)
// against a sequence of channel documents: what it decides, installs and
// refuses.
func TestApplyChannel(t *testing.T) {
	key := updatetest.Key(5)
	srv, file, mu := channelServer(t)
	c, _ := reportCard(t, "")
	c.Keys = []update.PublicKey{key.Public()}
	writeFile(t, filepath.Join(c.Root, plan.RoleFile), "worker\n", 0o644)
	var installed []string
	install := func(_ context.Context, source, version string) (apply.Result, error) {
		installed = append(installed, source+" "+version)
		return apply.Result{ID: version}, nil
	}
	sign := func(ch update.Channel, k update.PrivateKey) []byte {
		b, err := update.SignChannel(ch, k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	halted := testChannel(5, true)
	halted.Halted = true
	for _, tt := range []struct {
		name      string
		file      []byte
		take      bool
		installed int
		err       string
	}{
		{"wave closed", sign(testChannel(3, false), key), false, 0, ""},
		{"wave open", sign(testChannel(4, true), key), true, 1, ""},
		{"same document again", sign(testChannel(4, true), key), true, 2, ""},
		{"replayed older document", sign(testChannel(3, true), key), false, 2, "sequence 3, this node accepted 4"},
		{"other key", sign(testChannel(9, true), updatetest.Key(6)), false, 2, "not a signature"},
		{"halted", sign(halted, key), false, 2, ""},
		{"lifting the halt with the old sequence", sign(testChannel(4, true), key), false, 2, "sequence 4, this node accepted 5"},
		{"not found", nil, false, 2, "GET"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			*file = tt.file
			mu.Unlock()
			res, err := c.ApplyChannel(context.Background(), srv.URL+"/channel.json", install)
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("ApplyChannel: %v, want error %q", err, tt.err)
			}
			if res.Decision.Take != tt.take || len(installed) != tt.installed {
				t.Errorf("decision %+v, installed %q; want take %v, %d installs", res.Decision, installed, tt.take, tt.installed)
			}
		})
	}
	if len(installed) > 0 && installed[0] != "http://build-host:8080/bundles/v2/ "+chVersion {
		t.Errorf("installed %q", installed)
	}
	if b, _ := os.ReadFile(filepath.Join(c.Top, ChannelStateDir, "stable.seq")); string(b) != "5\n" {
		t.Errorf("recorded sequence %q, want 5", b)
	}
	if _, err := c.ApplyChannel(context.Background(), "build-host/channel.json", install); err == nil || !strings.Contains(err.Error(), "want http(s)://") {
		t.Errorf("URL without scheme: %v", err)
	}
	os.Remove(filepath.Join(c.Root, plan.RoleFile))
	mu.Lock()
	*file = sign(testChannel(6, true), key)
	mu.Unlock()
	if _, err := c.ApplyChannel(context.Background(), srv.URL, install); err == nil || !strings.Contains(err.Error(), "role") {
		t.Errorf("no role file: %v", err)
	}
}

// TestLease: a node waits for its reboot lease from a real status server
// while another node holds the only one, and gets it once that node
// reports from its new boot; a wait that runs out says so.
func TestLease(t *testing.T) {
	st := &netserve.Status{Dir: t.TempDir(), Log: log.New(io.Discard, "", 0), MaxRebooting: 1}
	srv := httptest.NewServer(&netserve.HTTP{Files: netserve.Files{Dir: t.TempDir()}, Status: st, Log: log.New(io.Discard, "", 0)})
	defer srv.Close()
	a, _ := reportCard(t, srv.URL)
	b, logs := reportCard(t, srv.URL)
	a.Node, a.BootID = "node-01", "boot-a1"
	b.Node, b.BootID = "node-02", "boot-b1"
	ctx := context.Background()
	if err := a.Lease(ctx, srv.URL, time.Second, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	err := b.Lease(ctx, srv.URL, 200*time.Millisecond, 10*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "no reboot lease") || !strings.Contains(strings.Join(*logs, "\n"), "1 nodes are rebooting (node-01), at most 1") {
		t.Fatalf("second lease: %v; log %q", err, *logs)
	}
	// afterReboot runs lease while holder, which holds the one lease,
	// comes back up (its first report from boot ends the lease).
	afterReboot := func(lease func() error, holder *Card, boot string) error {
		done := make(chan error)
		go func() { done <- lease() }()
		time.Sleep(50 * time.Millisecond)
		holder.BootID = boot
		if err := holder.Report(ctx, srv.URL); err != nil {
			t.Fatal(err)
		}
		return <-done
	}
	if err := afterReboot(func() error { return b.Lease(ctx, srv.URL, 5*time.Second, 10*time.Millisecond) }, a, "boot-a2"); err != nil {
		t.Errorf("lease after node-01 came back: %v", err)
	}
	// The fallback out of a failed version waits while others reboot
	// and gets its lease when one comes back, but gives up at once on a
	// host it cannot reach, where Lease keeps asking.
	if err := afterReboot(func() error { return a.FallbackLease(ctx, srv.URL, 5*time.Second, 10*time.Millisecond) }, b, "boot-b2"); err != nil {
		t.Errorf("fallback lease after node-02 came back: %v", err)
	}
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	if err := b.FallbackLease(ctx, gone.URL, 5*time.Second, 10*time.Millisecond); err == nil || !strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "no reboot lease") {
		t.Errorf("fallback lease from a host that is down: %v, want the first refusal", err)
	}
	if err := b.Lease(ctx, gone.URL, 300*time.Millisecond, 10*time.Millisecond); err == nil || !strings.Contains(err.Error(), "no reboot lease") {
		t.Errorf("lease from a host that is down: %v, want it to keep asking until its wait ends", err)
	}
	// A server refusing for good (another key pinned) is no reason to wait.
	os.WriteFile(filepath.Join(st.Dir, "node-03.pub"), []byte(updatetest.Key(9).Public().String()+"\n"), 0o644)
	a.Node = "node-03"
	if err := a.Lease(ctx, srv.URL, 5*time.Second, 10*time.Millisecond); err == nil || !strings.Contains(err.Error(), "403") || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("pinned to another key: %v", err)
	}
}

// TestApplyChannelOCI: the node follows a channel published to a tag of
// the real registry (oci://REF), logging in with RegistryAuthFile; the
// signature and sequence checks are those of a channel over HTTP.
func TestApplyChannelOCI(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{Users: []string{registrytest.HTPasswd}})
	key := updatetest.Key(5)
	c, _ := reportCard(t, "")
	c.Keys = []update.PublicKey{key.Public()}
	writeFile(t, filepath.Join(c.Root, plan.RoleFile), "worker\n", 0o644)
	var installed []string
	install := func(_ context.Context, source, version string) (apply.Result, error) {
		installed = append(installed, version)
		return apply.Result{ID: version}, nil
	}
	ref, err := registry.ParseRef(reg.Host() + "/fleet/channel:stable")
	if err != nil {
		t.Fatal(err)
	}
	login := func(string) (string, string, error) { return registrytest.User, registrytest.Password, nil }
	pub := registry.New(login, nil, false)
	publish := func(ch update.Channel, k update.PrivateKey) {
		t.Helper()
		b, err := update.SignChannel(ch, k)
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.PushChannel(context.Background(), ref, b); err != nil {
			t.Fatal(err)
		}
	}
	url := registry.Scheme + ref.String()
	publish(testChannel(4, true), key)
	if _, err := c.ApplyChannel(context.Background(), url, install); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("without the login: %v, want 401", err)
	}
	writeFile(t, filepath.Join(c.Root, RegistryAuthFile), registrytest.User+":"+registrytest.Password+"\n", 0o600)
	res, err := c.ApplyChannel(context.Background(), url, install)
	if err != nil || !res.Decision.Take || len(installed) != 1 || installed[0] != chVersion {
		t.Fatalf("ApplyChannel: %+v %v, installed %q", res.Decision, err, installed)
	}
	publish(testChannel(3, true), key)
	if _, err := c.ApplyChannel(context.Background(), url, install); err == nil || !strings.Contains(err.Error(), "sequence 3, this node accepted 4") {
		t.Errorf("replayed older channel: %v", err)
	}
	publish(testChannel(9, true), updatetest.Key(6))
	if _, err := c.ApplyChannel(context.Background(), url, install); err == nil || !strings.Contains(err.Error(), "not a signature") {
		t.Errorf("channel signed by another key: %v", err)
	}
	if len(installed) != 1 {
		t.Errorf("installed %q, want one install", installed)
	}
}
