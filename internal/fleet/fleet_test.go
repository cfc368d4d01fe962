package fleet

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/bootstate"
	"github.com/mkimage/mkimage/internal/cluster"
	"github.com/mkimage/mkimage/internal/cluster/plan"
	"github.com/mkimage/mkimage/internal/node/apply"
	"github.com/mkimage/mkimage/internal/node/updater"
	"github.com/mkimage/mkimage/internal/node/versions"
	"github.com/mkimage/mkimage/internal/server/netserve"
	"github.com/mkimage/mkimage/internal/update"
	"github.com/mkimage/mkimage/internal/update/registry"
	"github.com/mkimage/mkimage/internal/update/registry/registrytest"
)

const (
	v1 = "1111111111111111" // on every card
	v2 = "2222222222222222" // good
	v3 = "3333333333333333" // fails its checks on every worker
)

// fleetConfig is 9 workers and 3 gateways, rolled out in a canary of
// half the workers, the other workers, then the gateways; at most 2
// nodes reboot at once and a wave halts at its second failure.
func fleetConfig(t *testing.T) *cluster.Config {
	var b strings.Builder
	b.WriteString("[cluster]\nname = \"seed\"\n[network]\nsubnet = \"192.168.142.0/24\"\ngateway = \"192.168.142.1\"\n")
	b.WriteString("[rollout]\nmax_rebooting = 2\nmax_failures = 1\nmin_soak = \"1s\"\n")
	b.WriteString("[[rollout.wave]]\nname = \"canary\"\nroles = [\"worker\"]\nfraction = 0.5\n")
	b.WriteString("[[rollout.wave]]\nname = \"workers\"\nroles = [\"worker\"]\n")
	b.WriteString("[[rollout.wave]]\nname = \"gateways\"\nroles = [\"gateway\"]\n")
	for i := 1; i <= 12; i++ {
		name, role := fmt.Sprintf("w%02d", i), "worker"
		if i > 9 {
			name, role = fmt.Sprintf("gw%d", i-9), "gateway"
		}
		fmt.Fprintf(&b, "[[node]]\nname = %q\nmac = \"00:1e:06:00:00:%02x\"\nip = \"192.168.142.%d\"\nrole = %q\n", name, i, 10+i, role)
	}
	cfg, err := cluster.Parse("fleet.toml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// simNode is a node whose update command runs for real (channel fetch,
// signature, sequence, decision, reboot lease, signed status reports)
// over a card of temporary directories; installing records the version
// as tried, and "rebooting" commits it or, for a version it fails,
// records it bad and falls back as U-Boot would.
type simNode struct {
	card     *updater.Card
	role     string
	fails    map[string]bool
	boots    int
	mu       sync.Mutex
	installs map[string]int
}

func newSimNode(t *testing.T, name, role, statusURL string, keys []update.PublicKey) *simNode {
	root, top, boot := t.TempDir(), t.TempDir(), t.TempDir()
	for p, data := range map[string]string{plan.RoleFile: role + "\n", updater.StatusURLFile: statusURL + "\n"} {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
		if err := os.WriteFile(filepath.Join(root, p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := bootstate.Write(boot, bootstate.State{Good: v1, Try: v1}); err != nil {
		t.Fatal(err)
	}
	n := &simNode{role: role, fails: map[string]bool{}, installs: map[string]int{}}
	n.card = &updater.Card{Root: root, Top: top, Boot: boot, Running: v1, Board: "odroid-c2", Keys: keys,
		Node: name, BootID: name + "-boot-0", Log: func(string, ...any) {}}
	return n
}

func (n *simNode) install(_ context.Context, source, version string) (apply.Result, error) {
	if source != "http://build-host/bundles/"+version+"/" {
		return apply.Result{}, fmt.Errorf("source %q", source)
	}
	st, err := bootstate.Read(n.card.Boot)
	if err == nil {
		st, err = st.TryVersion(version)
	}
	if err == nil {
		err = bootstate.Write(n.card.Boot, st)
	}
	if err == nil {
		err = os.MkdirAll(filepath.Join(n.card.Top, versions.RootsDir, version), 0o755)
	}
	n.mu.Lock()
	n.installs[version]++
	n.mu.Unlock()
	return apply.Result{ID: version}, err
}

func (n *simNode) reboot(version string) error {
	n.boots++
	n.card.BootID = fmt.Sprintf("%s-boot-%d", n.card.Node, n.boots)
	if n.fails[version] {
		if err := apply.MarkBad(n.card.Top, version, "check 50-app failed: exit status 1"); err != nil {
			return err
		}
		return bootstate.Write(n.card.Boot, bootstate.State{Good: n.card.Running, Try: n.card.Running})
	}
	n.card.Running = version
	return apply.Commit(n.card.Boot, version)
}

// run is the node's update timer, run often, until ctx ends.
func (n *simNode) run(ctx context.Context, t *testing.T, channelURL, statusURL string, rebooting, most *atomic.Int32) {
	for ctx.Err() == nil {
		res, err := n.card.ApplyChannel(ctx, channelURL, n.install)
		if err == nil && res.Decision.Take {
			if err := n.card.Lease(ctx, statusURL, 20*time.Second, 5*time.Millisecond); err != nil {
				if ctx.Err() == nil {
					t.Errorf("%s: %v", n.card.Node, err)
				}
				return
			}
			r := rebooting.Add(1)
			for m := most.Load(); r > m && !most.CompareAndSwap(m, r); m = most.Load() {
			}
			time.Sleep(15 * time.Millisecond)
			rebooting.Add(-1)
			if err := n.reboot(res.Channel.Version); err != nil {
				t.Errorf("%s: %v", n.card.Node, err)
				return
			}
		}
		// What the check and apply do at the end of theirs.
		n.card.Report(ctx, statusURL)
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// recordingPublisher keeps every file published.
type recordingPublisher struct {
	FilePublisher
	mu        sync.Mutex
	published [][]byte
	at        []time.Time // when each was published
}

func (p *recordingPublisher) Publish(ctx context.Context, file []byte) error {
	p.mu.Lock()
	p.published = append(p.published, file)
	p.at = append(p.at, time.Now())
	p.mu.Unlock()
	return p.FilePublisher.Publish(ctx, file)
}

// TestRollout: 12 simulated nodes and a real status, lease and file
// server. v2 goes through the canary, the other workers and the
// gateways, never more than 2 nodes rebooting at once; v3, failing on
// the workers, halts in the canary and no gateway ever installs it; a
// node refuses an older channel document replayed to it.
func TestRollout(t *testing.T) {
	cfg := fleetConfig(t)
	waves, k := cfg.RolloutWaves()
	key := update.PrivateKey{Key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)), Comment: "fleet"}
	served := t.TempDir()
	inv := map[string]bool{}
	for _, n := range cfg.Nodes {
		inv[string(n.Name)] = true
	}
	st := &netserve.Status{Dir: t.TempDir(), Log: log.New(io.Discard, "", 0), Nodes: inv, MaxRebooting: k}
	srv := httptest.NewServer(&netserve.HTTP{Files: netserve.Files{Dir: served}, Status: st, Log: log.New(io.Discard, "", 0)})
	defer srv.Close()
	channelURL := srv.URL + "/" + update.ChannelFile
	pub := &recordingPublisher{FilePublisher: FilePublisher{Path: filepath.Join(served, update.ChannelFile)}}

	var nodes []*simNode
	for _, n := range cfg.Nodes {
		sn := newSimNode(t, string(n.Name), string(n.Role), srv.URL, []update.PublicKey{key.Public()})
		if n.Role == "worker" {
			sn.fails[v3] = true
		}
		nodes = append(nodes, sn)
	}
	phase := func(version string) (int32, string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		defer cancel()
		var rebooting, most atomic.Int32
		var wg sync.WaitGroup
		nctx, stop := context.WithCancel(ctx)
		for _, n := range nodes {
			wg.Add(1)
			go func() { defer wg.Done(); n.run(nctx, t, channelURL, srv.URL, &rebooting, &most) }()
		}
		var out bytes.Buffer
		err := Rollout(ctx, Options{Config: cfg, Server: srv.URL, Key: key, Publisher: pub, Version: version,
			Source: "http://build-host/bundles/" + version + "/", Poll: 20 * time.Millisecond, Out: &out})
		stop()
		wg.Wait()
		t.Logf("rollout of %s:\n%s", version, out.String())
		return most.Load(), out.String(), err
	}

	start := time.Now()
	most, out, err := phase(v2)
	if err != nil {
		t.Fatalf("rollout of v2: %v", err)
	}
	if most > int32(k) {
		t.Errorf("%d nodes rebooting at once, want at most %d", most, k)
	}
	for _, n := range nodes {
		s, _ := n.card.Status()
		if s.Good != v2 || n.installs[v2] != 1 {
			t.Errorf("%s: good %s, installed v2 %d times", n.card.Node, s.Good, n.installs[v2])
		}
	}
	for _, w := range waves {
		if !strings.Contains(out, "wave "+w.Name+" done") {
			t.Errorf("no line saying wave %s is done", w.Name)
		}
	}
	// No wave opened before the one before it soaked (min_soak after its
	// first commit). Whether the rollout had to wait for it depends on
	// how long the wave took, so the published documents are checked,
	// not the "soaking until" lines.
	for i, file := range pub.published {
		ch, err := update.VerifyChannel(file, []update.PublicKey{key.Public()})
		if err != nil || ch.Version != v2 {
			continue
		}
		for w := 1; w < len(ch.Waves); w++ {
			prev := ch.Waves[w-1]
			if ch.Waves[w].Open && (prev.FirstCommit == 0 || pub.at[i].Unix() < prev.FirstCommit+prev.MinSoak) {
				t.Errorf("wave %s opened at %d, before wave %s soaked (first commit %d, min soak %d s)",
					ch.Waves[w].Name, pub.at[i].Unix(), prev.Name, prev.FirstCommit, prev.MinSoak)
			}
		}
	}
	t.Logf("v2 on 12 nodes in %v, at most %d rebooting at once", time.Since(start).Round(time.Millisecond), most)
	// Run again: the channel is complete; nothing is published.
	before := len(pub.published)
	if err := Rollout(context.Background(), Options{Config: cfg, Server: srv.URL, Key: key, Publisher: pub, Version: v2, Poll: 20 * time.Millisecond}); err != nil || len(pub.published) != before {
		t.Errorf("resumed complete rollout: %v, %d more documents", err, len(pub.published)-before)
	}

	most, _, err = phase(v3)
	if !errors.Is(err, ErrHalted) || !strings.Contains(err.Error(), "wave canary") || !strings.Contains(err.Error(), "check 50-app failed") {
		t.Fatalf("rollout of v3: %v, want it halted in the canary", err)
	}
	if most > int32(k) {
		t.Errorf("%d nodes rebooting at once, want at most %d", most, k)
	}
	for _, n := range nodes {
		s, _ := n.card.Status()
		if n.role == "gateway" && n.installs[v3] != 0 || s.Good != v2 {
			t.Errorf("%s (%s): installed v3 %d times, good %s", n.card.Node, n.role, n.installs[v3], s.Good)
		}
	}
	ch, verr := update.VerifyChannel(pub.published[len(pub.published)-1], []update.PublicKey{key.Public()})
	if verr != nil || !ch.Halted || ch.Version != v3 || ch.Waves[1].Open {
		t.Fatalf("published channel: %+v, %v; want v3 halted with the workers' wave closed", ch, verr)
	}
	for _, n := range nodes {
		if n.installs[v3] > 0 && !ch.InWave(ch.Waves[0], n.card.Node, n.role) {
			t.Errorf("%s, outside the canary, installed v3", n.card.Node)
		}
	}
	// Running it again says it is halted.
	if err := Rollout(context.Background(), Options{Config: cfg, Server: srv.URL, Key: key, Publisher: pub, Version: v3}); !errors.Is(err, ErrHalted) {
		t.Errorf("rollout of a halted version again: %v", err)
	}

	// The first document (v2, every wave closed) replayed to a node.
	if err := os.WriteFile(pub.Path, pub.published[0], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[11].card.ApplyChannel(context.Background(), channelURL, nodes[11].install); !errors.Is(err, updater.ErrReplayed) {
		t.Errorf("replayed channel: %v", err)
	}

	// The fleet's status: every node, v2 good, the workers' v3 failure.
	reps, err := netserve.FetchStatus(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	rows := Status(cfg, reps)
	var tbl bytes.Buffer
	Print(&tbl, rows, func(time.Time) string { return "just now" })
	t.Logf("fleet status:\n%s", tbl.String())
	failed := 0
	for _, r := range rows {
		if r.Good != v2 || r.LastSeen == nil {
			t.Errorf("row %+v", r)
		}
		if len(r.Failed) > 0 {
			failed++
			if r.Role != "worker" || r.Failed[0].ID != v3 || r.Failed[0].Why != "check 50-app failed: exit status 1" {
				t.Errorf("row %+v", r)
			}
		}
	}
	if len(rows) != 12 || failed < 2 {
		t.Errorf("%d rows, %d with failures; want 12, at least 2", len(rows), failed)
	}
}

// TestStatusNever: a node that never reported shows as such.
func TestStatusNever(t *testing.T) {
	cfg := fleetConfig(t)
	seen := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	reps := []update.Received{{Report: update.Report{Node: "w01", Status: update.Status{Running: v1, Good: v1, Trying: v2,
		Versions: []update.Version{{ID: v3, State: "bad", Why: "check failed"}}}}, Received: seen},
		{Report: update.Report{Node: "stranger"}}}
	rows := Status(cfg, reps)
	var b bytes.Buffer
	if err := Print(&b, rows, func(t time.Time) string { return t.Format(time.RFC3339) }); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	if len(rows) != 12 || !strings.Contains(lines[1], "w01") || !strings.Contains(lines[1], v3+": check failed") || !strings.Contains(lines[1], "2026-01-02T03:04:05Z") ||
		!strings.HasSuffix(strings.TrimSpace(lines[2]), "never") || strings.Contains(b.String(), "stranger") {
		t.Errorf("table:\n%s", b.String())
	}
}

// TestRegistryPublisher: the channel goes to a tag of the real registry
// and comes back as published; before the first, there is none.
func TestRegistryPublisher(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ref, err := registry.ParseRef(reg.Host() + "/fleet/channel:seed")
	if err != nil {
		t.Fatal(err)
	}
	p := RegistryPublisher{Client: registry.New(nil, nil, false), Ref: ref}
	ctx := context.Background()
	if cur, err := p.Current(ctx); err != nil || cur != nil {
		t.Fatalf("before publishing: %q, %v; want none", cur, err)
	}
	key := update.PrivateKey{Key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)), Comment: "fleet"}
	for seq := uint64(1); seq <= 2; seq++ {
		file, err := update.SignChannel(update.Channel{Format: 1, Name: "seed", Sequence: seq, Version: v2, Source: "oci://" + reg.Host() + "/fleet/node:v2", MaxRebooting: 4,
			Waves: []update.Wave{{Name: "all", Roles: []string{"worker"}, Fraction: 1, Open: true}}}, key)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Publish(ctx, file); err != nil {
			t.Fatal(err)
		}
		if cur, err := p.Current(ctx); err != nil || !bytes.Equal(cur, file) {
			t.Errorf("published %q, read back %q, %v", file, cur, err)
		}
	}
	if p.String() != "oci://"+ref.String() {
		t.Errorf("String %q", p.String())
	}
}
