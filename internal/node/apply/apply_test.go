package apply

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/bootstate"
	"github.com/mkimage/mkimage/internal/build/bundle"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/fstree/fstreetest"
	"github.com/mkimage/mkimage/internal/node/btrfsctl"
	"github.com/mkimage/mkimage/internal/node/netfetch"
	"github.com/mkimage/mkimage/internal/node/versions"
	"github.com/mkimage/mkimage/internal/testenv"
	"github.com/mkimage/mkimage/internal/update"
	"github.com/mkimage/mkimage/internal/update/updatetest"
)

var epoch = time.Unix(1700000000, 0)

const board = "qemu-virt"

func put(t testing.TB, tr *fstree.Tree, p string, n *fstree.Inode) {
	t.Helper()
	fstreetest.Put(t, tr, p, n, epoch)
}

// version returns version n (1, 2, 3...): the same big file in each (so
// an incremental stream is much smaller than a full one), and a motd,
// kernel and command line naming n.
func version(t testing.TB, n int) *bundle.Version {
	tr := fstree.New(epoch)
	at := epoch.Add(time.Duration(n) * time.Hour)
	put(t, tr, "etc/hostname", fstree.NewFile(0o644, []byte("node\n"), epoch))
	put(t, tr, "etc/motd", fstree.NewFile(0o644, []byte(fmt.Sprintf("version %d\n", n)), at))
	put(t, tr, "bin/busybox", &fstree.Inode{Mode: fstree.ModeRegular | 0o755, Content: fstreetest.Random(1, 1<<20), Mtime: epoch, Atime: epoch, Ctime: epoch})
	put(t, tr, "bin/sh", fstree.NewSymlink("busybox", epoch))
	return &bundle.Version{
		Board: board, Cmdline: fmt.Sprintf("console=ttyAMA0 marker=v%d", n), Created: at,
		Kernel: []byte(fmt.Sprintf("kernel image %d", n)), Initrd: []byte("initramfs"), DTB: []byte("dtb"), Root: tr,
	}
}

// env is a node: a btrfs top level holding version 1 as the card has
// it, a boot partition whose state has 1 good, and a server of bundles.
type env struct {
	top, boot, srv string
	bundles        string // the server's directory, one bundle per name
	key            update.PrivateKey
	v1             update.Manifest
	// drop, when set, makes the server cut the connection of the first
	// request for that path half-way; ranged counts Range requests.
	drop   atomic.Value
	ranged atomic.Int32
}

func newEnv(t *testing.T) *env {
	testenv.NeedTools(t, "btrfs")
	e := &env{top: testenv.ScratchBtrfs(t), boot: t.TempDir(), bundles: t.TempDir(), key: updatetest.Key(1)}
	e.drop.Store("")
	e.v1 = e.write(t, "v1", version(t, 1), e.key)
	// The card: v1's root received (as the image writer's identity
	// would give it), its boot directory, a state with v1 good.
	roots := filepath.Join(e.top, versions.RootsDir)
	os.MkdirAll(roots, 0o755)
	// state/node is a subvolume on a card (versions.Prepare makes it),
	// and holds Incoming and the records.
	os.MkdirAll(filepath.Join(e.top, versions.StateDir), 0o755)
	if err := btrfsctl.Create(filepath.Join(e.top, versions.StateDir, "node")); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, "btrfs", "receive", "-f", filepath.Join(e.bundles, "v1", update.RootFull), roots)
	vdir := filepath.Join(e.boot, bootstate.VersionDir(e.v1.ID))
	os.MkdirAll(vdir, 0o755)
	os.WriteFile(filepath.Join(vdir, bootstate.BootEnvFile), []byte("bootargs=x\n"), 0o644)
	st, err := bootstate.New(e.v1.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := bootstate.Write(e.boot, st); err != nil {
		t.Fatal(err)
	}
	files := http.FileServer(http.Dir(e.bundles))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") != "" {
			e.ranged.Add(1)
		}
		if d := e.drop.Load().(string); d != "" && r.URL.Path == d && e.drop.CompareAndSwap(d, "") {
			b, err := os.ReadFile(filepath.Join(e.bundles, filepath.FromSlash(d)))
			if err != nil {
				t.Error(err)
			}
			w.Header().Set("Content-Length", fmt.Sprint(len(b)))
			w.Write(b[:len(b)/2])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler) // cuts the connection
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	e.srv = srv.URL
	return e
}

func (e *env) write(t testing.TB, name string, v *bundle.Version, key update.PrivateKey, parents ...bundle.Parent) update.Manifest {
	t.Helper()
	m, err := bundle.Write(filepath.Join(e.bundles, name), v, key, parents...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (e *env) opts(name, running string) Options {
	return Options{
		Source: e.srv + "/" + name, Top: e.top, Boot: e.boot,
		Incoming: filepath.Join(e.top, versions.StateDir, "node", "incoming"),
		Keys:     []update.PublicKey{e.key.Public()}, Board: board, Running: running,
		Fetcher: &netfetch.Fetcher{Backoff: time.Millisecond, Stall: 10 * time.Second},
		// Stands in for firstboot.Carry: says which root it carried from.
		Carry: func(from, to string) error {
			return os.WriteFile(filepath.Join(to, "etc/carried-from"), []byte(filepath.Base(from)), 0o644)
		},
	}
}

func (e *env) apply(t *testing.T, name, running string) Result {
	t.Helper()
	o := e.opts(name, running)
	o.Log = t.Logf
	r, err := Apply(context.Background(), o)
	if err != nil {
		t.Fatalf("Apply %s: %v", name, err)
	}
	return r
}

func (e *env) state(t testing.TB) bootstate.State {
	t.Helper()
	st, err := bootstate.Read(e.boot)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// checkApplied checks that version m is whole on the node and tried next.
func (e *env) checkApplied(t *testing.T, m update.Manifest, motd string) {
	t.Helper()
	ok, err := received(filepath.Join(e.top, versions.RootsDir, m.ID), m.ID)
	if err != nil || !ok {
		t.Errorf("roots/%s: not a received read-only root (%v)", m.ID, err)
	}
	if b, err := os.ReadFile(filepath.Join(e.top, versions.RootsDir, m.ID, "etc/motd")); err != nil || string(b) != motd {
		t.Errorf("roots/%s/etc/motd = %q, %v; want %q", m.ID, b, err, motd)
	}
	vdir := filepath.Join(e.boot, bootstate.VersionDir(m.ID))
	env, _ := bootstate.BootEnv(m.Cmdline)
	for name, want := range map[string]string{
		bootstate.KernelFile: "kernel image " + strings.TrimPrefix(motd[:len(motd)-1], "version "),
		bootstate.InitrdFile: "initramfs", bootstate.DTBFile: "dtb", bootstate.BootEnvFile: string(env),
	} {
		if b, err := os.ReadFile(filepath.Join(vdir, name)); err != nil || string(b) != want {
			t.Errorf("v/%s/%s = %q, %v; want %q", m.ID, name, b, err, want)
		}
	}
	if st := e.state(t); st.Try != m.ID || st.Tries != bootstate.MaxTries {
		t.Errorf("state %+v, want try %s with %d tries", st, m.ID, bootstate.MaxTries)
	}
	// Its live root is made, writable, with the running root's identity.
	live := filepath.Join(e.top, versions.LiveDir, m.ID)
	if info, err := btrfsctl.Stat(live); err != nil || info.ReadOnly {
		t.Errorf("live/%s: %+v, %v; want a writable subvolume", m.ID, info, err)
	}
	if b, err := os.ReadFile(filepath.Join(live, "etc/carried-from")); err != nil || string(b) != e.state(t).Good {
		t.Errorf("live/%s carried from %q (%v), want the running %s", m.ID, b, err, e.state(t).Good)
	}
	if _, err := os.Lstat(live + ".new"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("live/%s.new left behind (%v)", m.ID, err)
	}
	if _, err := ReadRecord(e.top, m.ID); err != nil {
		t.Errorf("record: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.opts("", m.ID).Incoming, m.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("incoming/%s left behind (%v)", m.ID, err)
	}
}

func payloadSize(m update.Manifest, name string) int64 {
	for _, p := range m.Payloads {
		if p.Name == name {
			return p.Size
		}
	}
	return -1
}

// TestApply: v2 full onto the card's v1, committed after its boot, then
// v3 incremental from v2.
func TestApply(t *testing.T) {
	e := newEnv(t)
	m2 := e.write(t, "v2", version(t, 2), e.key)
	r := e.apply(t, "v2", e.v1.ID)
	if !r.Full || r.Parent != "" || r.ID != m2.ID {
		t.Errorf("v2: result %+v, want a full receive", r)
	}
	e.checkApplied(t, m2, "version 2\n")
	if st := e.state(t); st.Good != e.v1.ID {
		t.Errorf("v2: good is %s, want v1 still", st.Good)
	}

	// v2 boots and passes: committed. Commit on the good version again
	// changes nothing.
	if err := Commit(e.boot, m2.ID); err != nil {
		t.Fatal(err)
	}
	if err := Commit(e.boot, m2.ID); err != nil {
		t.Fatal(err)
	}
	if st := e.state(t); st.Good != m2.ID || st.Try != m2.ID || st.Tries != 0 {
		t.Errorf("after Commit: %+v", st)
	}

	// As on a node, v2 runs on its live snapshot (writable, with no
	// received UUID: receive must still find roots/v2 as the parent).
	if _, err := versions.Prepare(e.top, m2.ID, t.Logf); err != nil {
		t.Fatal(err)
	}

	v2 := version(t, 2)
	m3 := e.write(t, "v3", version(t, 3), e.key, bundle.Parent{ID: e.v1.ID, Root: version(t, 1).Root}, bundle.Parent{ID: m2.ID, Root: v2.Root})
	r = e.apply(t, "v3", m2.ID)
	if r.Full || r.Parent != m2.ID {
		t.Errorf("v3: result %+v, want incremental from v2", r)
	}
	full := payloadSize(m3, update.RootFull)
	if r.Bytes >= full {
		t.Errorf("v3: downloaded %d bytes, root.full alone is %d", r.Bytes, full)
	}
	// Its initramfs and DTB are v2's: copied on the card, not
	// downloaded; only the stream and the new kernel are.
	if want := payloadSize(m3, "root.from-"+m2.ID) + payloadSize(m3, "Image"); r.Bytes != want {
		t.Errorf("v3: downloaded %d bytes, want %d (the incremental stream and the kernel)", r.Bytes, want)
	}
	e.checkApplied(t, m3, "version 3\n")
	if b, err := os.ReadFile(filepath.Join(e.top, versions.RootsDir, m3.ID, "bin/busybox")); err != nil || len(b) != 1<<20 {
		t.Errorf("v3's busybox (shared with v2): %d bytes, %v", len(b), err)
	}
}

// TestRefuse: bundles Apply must refuse write nothing.
func TestRefuse(t *testing.T) {
	e := newEnv(t)
	// The node runs v2, applied and committed, so its age is recorded.
	m2 := e.write(t, "v2", version(t, 2), e.key)
	e.apply(t, "v2", e.v1.ID)
	if err := Commit(e.boot, m2.ID); err != nil {
		t.Fatal(err)
	}
	running := m2.ID

	other := e.write(t, "other-key", version(t, 3), updatetest.Key(2))
	tampered := e.write(t, "tampered", version(t, 3), e.key)
	p := filepath.Join(e.bundles, "tampered", update.RootFull)
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 1
	os.WriteFile(p, b, 0o644)
	vb := version(t, 3)
	vb.Board = "rpi4"
	otherBoard := e.write(t, "other-board", vb, e.key)
	vo := version(t, 0) // created an hour before v1, two before v2
	older := e.write(t, "older", vo, e.key)
	vbad := version(t, 4)
	bad := e.write(t, "bad", vbad, e.key)
	if err := MarkBad(e.top, bad.ID, "failed its checks"); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name string
		id   string
		want error
	}{
		{"other-key", other.ID, update.ErrInvalid},
		{"tampered", tampered.ID, update.ErrInvalid},
		{"other-board", otherBoard.ID, ErrOtherBoard},
		{"older", older.ID, ErrOlder},
		{"v2", running, ErrRunning},
		{"bad", bad.ID, ErrBad},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := e.state(t)
			o := e.opts(c.name, running)
			o.Log = t.Logf
			_, err := Apply(context.Background(), o)
			if !errors.Is(err, c.want) {
				t.Fatalf("Apply: %v, want %v", err, c.want)
			}
			t.Log(err)
			if c.id != running {
				for _, p := range []string{
					filepath.Join(e.top, versions.RootsDir, c.id),
					filepath.Join(e.boot, bootstate.VersionDir(c.id)),
					filepath.Join(o.Incoming, c.id),
					filepath.Join(e.top, RecordsDir, c.id+".json"),
				} {
					if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("%s exists after a refusal (%v)", p, err)
					}
				}
			}
			if st := e.state(t); st != before {
				t.Errorf("state %+v, was %+v", st, before)
			}
		})
	}

	// A version that used its tries (U-Boot fell back to good) is bad
	// too, before the node has recorded it.
	t.Run("failed-tries", func(t *testing.T) {
		before := e.state(t)
		failed := bootstate.State{Good: running, Try: bad.ID, Tries: 0}
		if err := bootstate.Write(e.boot, failed); err != nil {
			t.Fatal(err)
		}
		defer bootstate.Write(e.boot, before)
		os.Remove(filepath.Join(e.top, RecordsDir, bad.ID+".bad"))
		defer MarkBad(e.top, bad.ID, "failed its checks")
		_, err := Apply(context.Background(), e.opts("bad", running))
		if !errors.Is(err, ErrBad) {
			t.Fatalf("Apply: %v, want %v", err, ErrBad)
		}
		if st := e.state(t); st != failed {
			t.Errorf("state %+v, was %+v", st, failed)
		}
	})

	// A channel's source holding another version than the channel's.
	t.Run("not-wanted", func(t *testing.T) {
		o := e.opts("older", running)
		o.AllowOlder, o.Want = true, running
		if _, err := Apply(context.Background(), o); !errors.Is(err, ErrNotWanted) {
			t.Fatalf("Apply: %v, want %v", err, ErrNotWanted)
		}
		if _, err := os.Lstat(filepath.Join(e.top, versions.RootsDir, older.ID)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the unwanted version's root exists (%v)", err)
		}
	})

	// What a flag allows.
	o := e.opts("older", running)
	o.AllowOlder = true
	if _, err := Apply(context.Background(), o); err != nil {
		t.Errorf("older with AllowOlder: %v", err)
	}
	o = e.opts("bad", running)
	o.Retry = true
	if _, err := Apply(context.Background(), o); err != nil {
		t.Errorf("bad with Retry: %v", err)
	}
}

// TestInterrupted: what a cut connection or a cut receive leaves is
// recovered.
func TestInterrupted(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, e *env, m update.Manifest)
		check func(t *testing.T, e *env, r Result)
	}{
		{"dropped connection", func(t *testing.T, e *env, m update.Manifest) {
			e.drop.Store("/v2/" + update.RootFull)
		}, func(t *testing.T, e *env, r Result) {
			if e.ranged.Load() == 0 {
				t.Error("the download was not resumed with a Range request")
			}
		}},
		{"half receive", func(t *testing.T, e *env, m update.Manifest) {
			p := filepath.Join(e.top, versions.RootsDir, m.ID)
			if err := btrfsctl.Create(p); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(p, "partial"), []byte("x"), 0o644)
		}, nil},
		{"half-carried live root", func(t *testing.T, e *env, m update.Manifest) {
			p := filepath.Join(e.top, versions.LiveDir, m.ID+".new")
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := btrfsctl.Create(p); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"half download and boot dir", func(t *testing.T, e *env, m update.Manifest) {
			// A .part of root.full, another version's abandoned
			// download, and boot files without boot.env.
			in := e.opts("", "").Incoming
			os.MkdirAll(filepath.Join(in, m.ID), 0o755)
			b, _ := os.ReadFile(filepath.Join(e.bundles, "v2", update.RootFull))
			os.WriteFile(filepath.Join(in, m.ID, update.RootFull+".part"), b[:len(b)/3], 0o600)
			os.MkdirAll(filepath.Join(in, "0123456789abcdef"), 0o755)
			vdir := filepath.Join(e.boot, bootstate.VersionDir(m.ID))
			os.MkdirAll(vdir, 0o755)
			os.WriteFile(filepath.Join(vdir, bootstate.KernelFile), []byte("half"), 0o644)
		}, func(t *testing.T, e *env, r Result) {
			if r.Bytes >= payloadSize(mustRecord(t, e, r.ID), update.RootFull) {
				t.Errorf("downloaded %d bytes: the .part was not resumed", r.Bytes)
			}
			if _, err := os.Stat(filepath.Join(e.opts("", "").Incoming, "0123456789abcdef")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("abandoned download kept (%v)", err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			m2 := e.write(t, "v2", version(t, 2), e.key)
			c.setup(t, e, m2)
			r := e.apply(t, "v2", e.v1.ID)
			e.checkApplied(t, m2, "version 2\n")
			if c.check != nil {
				c.check(t, e, r)
			}
			// Applying again (a cut after the try was marked) redoes
			// nothing and downloads nothing.
			r = e.apply(t, "v2", e.v1.ID)
			if r.Bytes != 0 {
				t.Errorf("second Apply downloaded %d bytes", r.Bytes)
			}
			e.checkApplied(t, m2, "version 2\n")
		})
	}
}

func mustRecord(t *testing.T, e *env, id string) update.Manifest {
	m, err := ReadRecord(e.top, id)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestPrune: good, tried and running versions stay; the oldest others go.
func TestPrune(t *testing.T) {
	e := newEnv(t)
	var ms []update.Manifest
	for n := 2; n <= 4; n++ {
		m := e.write(t, fmt.Sprintf("v%d", n), version(t, n), e.key)
		e.apply(t, fmt.Sprintf("v%d", n), e.v1.ID)
		ms = append(ms, m)
	}
	// v4 is tried, v1 good; the node still runs v1. Live roots exist for
	// v1 and v2 (v2 was booted once).
	for _, id := range []string{e.v1.ID, ms[0].ID} {
		if _, err := versions.Prepare(e.top, id, t.Logf); err != nil {
			t.Fatal(err)
		}
	}
	exists := func(id string) bool {
		_, err := os.Stat(filepath.Join(e.top, versions.RootsDir, id))
		return err == nil
	}
	// keep 1: v2 (oldest of the unprotected v2, v3) goes, v3 stays.
	if err := Prune(e.top, e.boot, e.v1.ID, 1, t.Logf); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]bool{e.v1.ID: true, ms[0].ID: false, ms[1].ID: true, ms[2].ID: true} {
		if exists(id) != want {
			t.Errorf("roots/%s exists: %v, want %v", id, !want, want)
		}
	}
	for _, p := range []string{
		filepath.Join(e.top, versions.LiveDir, ms[0].ID),
		filepath.Join(e.boot, bootstate.VersionDir(ms[0].ID)),
		filepath.Join(e.top, RecordsDir, ms[0].ID+".json"),
	} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s kept (%v)", p, err)
		}
	}
	// keep 0, running v3 (a try replaced by v4 while it ran): all kept.
	if err := Prune(e.top, e.boot, ms[1].ID, 0, t.Logf); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{e.v1.ID, ms[1].ID, ms[2].ID} {
		if !exists(id) {
			t.Errorf("roots/%s pruned", id)
		}
	}
	if _, err := os.Stat(filepath.Join(e.top, versions.LiveDir, e.v1.ID)); err != nil {
		t.Errorf("good version's live root: %v", err)
	}
	// keep 0 running v1: v3 goes.
	if err := Prune(e.top, e.boot, e.v1.ID, 0, t.Logf); err != nil {
		t.Fatal(err)
	}
	if exists(ms[1].ID) {
		t.Error("v3 kept with keep 0")
	}
}

// TestDroppedThenApplied: a connection cut with no retry left fails the
// Apply, leaves the running version and the state as they were, and the
// next Apply resumes the download where it stopped.
func TestDroppedThenApplied(t *testing.T) {
	e := newEnv(t)
	m2 := e.write(t, "v2", version(t, 2), e.key)
	before := e.state(t)
	e.drop.Store("/v2/" + update.RootFull)
	o := e.opts("v2", e.v1.ID)
	o.Log = t.Logf
	o.Fetcher.Retries = -1 // one attempt only (0 would be netfetch.DefaultRetries)
	_, err := Apply(context.Background(), o)
	if err == nil || errors.Is(err, update.ErrInvalid) {
		t.Fatalf("Apply over a cut connection: %v, want a download error", err)
	}
	t.Log(err)
	if _, err := os.Lstat(filepath.Join(e.top, versions.RootsDir, m2.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("roots/%s exists after a failed download (%v)", m2.ID, err)
	}
	if st := e.state(t); st != before {
		t.Errorf("state %+v, was %+v", st, before)
	}
	r := e.apply(t, "v2", e.v1.ID)
	if e.ranged.Load() == 0 {
		t.Error("the second Apply did not resume with a Range request")
	}
	if full := payloadSize(m2, update.RootFull); r.Bytes >= full {
		t.Errorf("second Apply downloaded %d bytes, root.full is %d: not resumed", r.Bytes, full)
	}
	e.checkApplied(t, m2, "version 2\n")
}
