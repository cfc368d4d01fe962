package netboot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/bmap"
	"github.com/mkimage/mkimage/internal/node/netfetch"
	"github.com/mkimage/mkimage/internal/node/netinstall"
	"github.com/mkimage/mkimage/internal/node/netroot"
	"github.com/mkimage/mkimage/internal/server/netserve"
	"github.com/mkimage/mkimage/internal/testenv"
	"github.com/mkimage/mkimage/internal/update"
	"github.com/mkimage/mkimage/internal/update/updatetest"
)

// fault makes the project's HTTP server misbehave once, on the first
// ranged GET of an image that reaches half its length: "stall" stops
// sending half way (until the client gives up), "drop" closes the
// connection half way.
type fault struct {
	mode atomic.Value // string: "", "stall", "drop"
	hit  atomic.Int32
}

type faultWriter struct {
	http.ResponseWriter
	f    *fault
	r    *http.Request
	n, k int
}

func (w *faultWriter) Write(p []byte) (int, error) {
	if w.n+len(p) > w.k && w.f.hit.CompareAndSwap(0, 1) {
		half := max(w.k-w.n, 0)
		w.ResponseWriter.Write(p[:half])
		w.ResponseWriter.(http.Flusher).Flush()
		if w.f.mode.Load() == "stall" {
			select {
			case <-w.r.Context().Done():
			case <-time.After(20 * time.Second):
			}
			return half, errors.New("stalled")
		}
		panic(http.ErrAbortHandler) // the connection goes away
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += n
	return n, err
}

func (f *fault) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rs, re int
		if m, _ := f.mode.Load().(string); m != "" && strings.HasSuffix(r.URL.Path, ".img") {
			if _, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &rs, &re); err == nil && re-rs > 1<<20 {
				w = &faultWriter{ResponseWriter: w, f: f, r: r, k: (re - rs) / 2}
			}
		}
		h.ServeHTTP(w, r)
	})
}

// netnsPair makes a server and a node namespace joined by a veth pair
// (10.81.0.1 and .2) and serves dir with the project's HTTP server in
// the first; it returns the node namespace and the server's address.
func netnsPair(t *testing.T, dir string, f *fault) (string, netip.AddrPort) {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "ip")
	srvNS, nodeNS := testenv.NewNetns(t, "nbs-s"), testenv.NewNetns(t, "nbs-n")
	for _, args := range [][]string{
		{"-n", srvNS, "link", "add", "vs", "type", "veth", "peer", "name", "eth0", "netns", nodeNS},
		{"-n", srvNS, "addr", "add", "10.81.0.1/24", "dev", "vs"},
		{"-n", srvNS, "link", "set", "vs", "up"},
		{"-n", nodeNS, "addr", "add", "10.81.0.2/24", "dev", "eth0"},
		{"-n", nodeNS, "link", "set", "eth0", "up"},
		{"-n", nodeNS, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	var l net.Listener
	if err := testenv.InNetns(srvNS, func() (err error) { l, err = net.Listen("tcp4", "10.81.0.1:0"); return }); err != nil {
		t.Fatal(err)
	}
	h := &netserve.HTTP{Files: netserve.Files{Dir: dir}, Log: log.New(io.Discard, "", 0)}
	srv := &http.Server{Handler: f.wrap(h)}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return nodeNS, netip.MustParseAddrPort(l.Addr().String())
}

// nsClient is an HTTP client whose connections are made in namespace
// ns: the transport dials on goroutines of its own, which InNetns does
// not reach.
func nsClient(ns string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = testenv.InNetns(ns, func() (err error) {
			c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}}}
}

// signedTree writes a signed netboot tree with both images: a small
// btrfs root and a 9 MiB card whose data spans several map ranges.
func signedTree(t *testing.T, key update.PrivateKey) (string, []byte) {
	t.Helper()
	tmp := t.TempDir()
	card := make([]byte, 12<<20)
	rand.New(rand.NewSource(7)).Read(card[:9<<20])
	copy(card[510:], []byte{0x55, 0xaa})
	p := filepath.Join(tmp, "card.img")
	if err := os.WriteFile(p, card, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := bmap.Create(bytes.NewReader(card), int64(len(card)), []bmap.Extent{{Off: 0, Len: 9 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.WriteFile(p + ".bmap"); err != nil {
		t.Fatal(err)
	}
	o := baseOptions(t)
	o.Card, o.Nodes[0].Mode = p, Install
	o.Key, o.Trusted, o.Board = &key, []update.PublicKey{key.Public()}, "qemu-virt"
	dir := filepath.Join(tmp, "tree")
	if _, err := Write(dir, o); err != nil {
		t.Fatal(err)
	}
	return dir, card
}

func hexSum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// logLines collects a node's console lines, safe for concurrent use,
// and calls on (if set) with each.
type logLines struct {
	mu    sync.Mutex
	lines []string
	on    func(string)
}

func (l *logLines) logf(format string, a ...any) {
	s := fmt.Sprintf(format, a...)
	l.mu.Lock()
	l.lines = append(l.lines, s)
	on := l.on
	l.mu.Unlock()
	if on != nil {
		on(s)
	}
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// TestSignedNetinstall runs netinstall in a node namespace against the
// project's HTTP server in another, serving a signed tree the netboot
// package wrote: a tampered image and a manifest signed by another key
// are refused with nothing written to the card (a file; an image
// tampered in a later range leaves the earlier ranges and no partition
// table) and the reason
// on the console, and the step's retry succeeds once the server is
// fixed; a server that stalls or drops the connection half way through
// a range is resumed, and the card is written and verified.
func TestSignedNetinstall(t *testing.T) {
	key, other := updatetest.Key(11), updatetest.Key(12)
	dir, card := signedTree(t, key)
	f := &fault{}
	f.mode.Store("")
	nodeNS, ap := netnsPair(t, dir, f)
	url := fmt.Sprintf("http://:%d/%s", ap.Port(), CardImage)
	img := filepath.Join(dir, CardImage)
	sig := filepath.Join(dir, update.NetbootSignature)
	orig, _ := os.ReadFile(img)
	origSig, _ := os.ReadFile(sig)
	used := bytes.Repeat([]byte{0xee}, 16<<20) // a used card

	for _, c := range []struct {
		name   string
		broken func()   // what is wrong on the server at first
		refuse string   // the console line saying why, "" if none
		later  bool     // refused after earlier ranges were written
		fault  string   // "stall" or "drop"
		want   []string // console lines of the run
	}{
		{name: "tampered image", refuse: "sha256", broken: func() {
			b := bytes.Clone(orig)
			b[1000] ^= 0xff // in the first range: the map's sum no longer matches
			os.WriteFile(img, b, 0o644)
		}, want: []string{"blocks 0-1023 of http://10.81.0.1:", ", the map says ", "not written"}},
		// In a later range, after the first ones were written: what is
		// on the card then must not boot as an image.
		{name: "tampered later range", refuse: "sha256", later: true, broken: func() {
			b := bytes.Clone(orig)
			b[(5<<20)+1000] ^= 0xff
			os.WriteFile(img, b, 0o644)
		}, want: []string{", the map says ", "not written"}},
		{name: "signed by another key", refuse: "not a signature", broken: func() {
			doc, _ := os.ReadFile(filepath.Join(dir, update.NetbootFile))
			os.WriteFile(sig, update.Sign(doc, other), 0o644)
		}, want: []string{`images.sig is not a signature of images.json by any of the 1 trusted keys ("key 11")`}},
		{name: "stall", fault: "stall", want: []string{"nothing received for 500ms; resuming at byte "}},
		{name: "drop", fault: "drop", want: []string{"connection ended at byte", "resuming at byte "}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "card")
			os.WriteFile(dst, used, 0o644)
			fix := func() { os.WriteFile(img, orig, 0o644); os.WriteFile(sig, origSig, 0o644) }
			defer fix()
			if c.broken != nil {
				c.broken()
			}
			f.hit.Store(0)
			f.mode.Store(c.fault)
			defer f.mode.Store("")
			var untouched atomic.Value
			lines := &logLines{}
			lines.on = func(s string) {
				if c.refuse != "" && strings.Contains(s, c.refuse) && strings.Contains(s, "trying again") && untouched.Load() == nil {
					// The step failed; before it tries again: nothing
					// written, then the server is fixed.
					now, _ := os.ReadFile(dst)
					if c.later {
						// Earlier ranges are on the card, but its
						// partition table is gone (erased before the
						// first write, written after the last): no
						// half-written image to boot.
						untouched.Store(bytes.Equal(now[:512], make([]byte, 512)) && !bytes.Equal(now[512:4<<20], used[512:4<<20]))
					} else {
						untouched.Store(bytes.Equal(now, used))
					}
					fix()
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			err := testenv.InNetns(nodeNS, func() error {
				fe := &netfetch.Fetcher{Client: nsClient(nodeNS), Log: lines.logf, Stall: 500 * time.Millisecond, Retries: 3, Backoff: 100 * time.Millisecond, StepRetries: 3}
				return fe.Persist(ctx, "netinstall", func() error {
					_, err := netinstall.Install(ctx, netinstall.Options{
						URL: url, Server: ap.Addr(), Disk: dst, Keys: []update.PublicKey{key.Public()},
						Fetcher: fe, Log: lines.logf,
					})
					return err
				})
			})
			log := lines.String()
			t.Logf("console:\n%s", log)
			if err != nil {
				t.Fatalf("%v\nconsole:\n%s", err, log)
			}
			for _, w := range append(c.want, "images.json: signature verified (key "+key.Public().String()+")", "sha256 "+hexSum(orig)+" verified") {
				if !strings.Contains(log, w) {
					t.Errorf("console lacks %q:\n%s", w, log)
				}
			}
			if c.refuse != "" && untouched.Load() != true {
				t.Errorf("refused image: card untouched = %v, want true\n%s", untouched.Load(), log)
			}
			if c.fault != "" && f.hit.Load() != 1 {
				t.Errorf("the %s fault never happened", c.fault)
			}
			got, _ := os.ReadFile(dst)
			if !bytes.Equal(got[:9<<20], card[:9<<20]) {
				t.Error("card does not hold the image's data")
			}
			if !bytes.Equal(got[9<<20:], used[9<<20:]) {
				t.Error("unmapped blocks were written")
			}
		})
	}
}

// TestSignedNetroot: a diskless node given a tampered root image from a
// signed tree mounts nothing (and keeps no tmpfs), says why, and mounts
// the root once the server is fixed.
func TestSignedNetroot(t *testing.T) {
	testenv.NeedFile(t, "/dev/loop-control")
	key := updatetest.Key(11)
	dir, _ := signedTree(t, key)
	f := &fault{}
	f.mode.Store("")
	nodeNS, ap := netnsPair(t, dir, f)
	img := filepath.Join(dir, RootImage)
	orig, _ := os.ReadFile(img)
	bad := bytes.Clone(orig)
	bad[0x10040] ^= 0xff // the btrfs superblock's magic
	os.WriteFile(img, bad, 0o644)
	defer os.WriteFile(img, orig, 0o644)

	work := t.TempDir()
	o := netroot.Options{
		URL: fmt.Sprintf("http://:%d/%s", ap.Port(), RootImage), Server: ap.Addr(), Keys: []update.PublicKey{key.Public()},
		Dir: filepath.Join(work, "ram"), Target: filepath.Join(work, "newroot"),
	}
	var refused atomic.Value
	lines := &logLines{}
	lines.on = func(s string) {
		if strings.Contains(s, "not written") && strings.Contains(s, "trying again") && refused.Load() == nil {
			refused.Store(mounted(t, o.Dir) || mounted(t, o.Target))
			os.WriteFile(img, orig, 0o644)
		}
	}
	o.Log = lines.logf
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := testenv.InNetns(nodeNS, func() error {
		fe := &netfetch.Fetcher{Client: nsClient(nodeNS), Log: lines.logf, Stall: 500 * time.Millisecond, Retries: 3, Backoff: 100 * time.Millisecond, StepRetries: 3}
		o.Fetcher = fe
		return fe.Persist(ctx, "diskless root", func() error { _, err := netroot.Mount(ctx, o); return err })
	})
	t.Logf("console:\n%s", lines)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(o.Dir, unix.MNT_DETACH)
	defer unix.Unmount(o.Target, unix.MNT_DETACH)
	if refused.Load() != false {
		t.Errorf("after the tampered image: something mounted = %v, want false", refused.Load())
	}
	if b, err := os.ReadFile(filepath.Join(o.Target, "sbin/init")); err != nil || !bytes.Contains(b, []byte("echo hi")) {
		t.Errorf("root's init: %q, %v", b, err)
	}
}

// mounted reports whether dir is a mount point (per mountinfo).
func mounted(t *testing.T, dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}
