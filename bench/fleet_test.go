package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/build/bundle"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/fstree/fstreetest"
	"github.com/mkimage/mkimage/internal/node/netfetch"
	"github.com/mkimage/mkimage/internal/server/netserve"
	"github.com/mkimage/mkimage/internal/update"
	"github.com/mkimage/mkimage/internal/update/registry"
	"github.com/mkimage/mkimage/internal/update/registry/registrytest"
	"github.com/mkimage/mkimage/internal/update/updatetest"
)

// BenchmarkFleet is bench/fleet.sh's measurement (issue 15): N nodes at
// once (BENCH_NODES, default 46) fetch one signed version from Debian's
// docker-registry on loopback (registrytest; bundle.Push put it there)
// and the same bundle directories from netserve.HTTP, what `mkimage
// serve` answers HTTP with; first the full version (a node holding
// nothing: root.full and the boot files), then the incremental one (a
// node holding v1: root.from-v1 and the boot files that changed). Each
// node does what internal/node/apply does before receiving: the signed
// manifest checked (registry.Client.Open, or manifest.json and
// manifest.sig over HTTP and update.Verify), then each payload it needs
// downloaded with netfetch.Fetcher.Download into its own directory, over
// its own connections. Both servers sit behind the same counting TCP
// proxy, so the bytes are what each server put on the wire (HTTP headers
// included). Prints one table; asserts nothing. Runs once whatever b.N.
func BenchmarkFleet(b *testing.B) {
	nodes := 46
	if s := os.Getenv("BENCH_NODES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("BENCH_NODES=%q: want a positive number", s)
		}
		nodes = n
	}
	// The nodes' directories: tmpfs where there is one, so the bench
	// host's disk does not set the pace of both servers alike.
	nodeBase := os.Getenv("BENCH_NODE_DIR")
	if nodeBase == "" {
		if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
			nodeBase = "/dev/shm"
		}
	}
	ctx := context.Background()
	key := updatetest.Key(15)
	keys := []update.PublicKey{key.Public()}

	bundles := b.TempDir()
	v1, v2 := fleetVersions(b)
	m1, err := bundle.Write(filepath.Join(bundles, "v1"), v1, key)
	if err != nil {
		b.Fatal(err)
	}
	m2, err := bundle.Write(filepath.Join(bundles, "v2"), v2, key, bundle.Parent{ID: m1.ID, Root: v1.Root})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("bundles: v1 %s, v2 %s", payloadSizes(m1), payloadSizes(m2))

	reg := registrytest.Start(b, registrytest.Options{})
	for _, v := range []string{"v1", "v2"} {
		ref, err := registry.ParseRef(reg.Host() + "/fleet/bench:" + v)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := bundle.Push(ctx, registry.New(nil, nil, true), filepath.Join(bundles, v), ref, keys, nil); err != nil {
			b.Fatal(err)
		}
	}
	regProxy := startCountingProxy(b, reg.Addr)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	srv := &netserve.HTTP{Files: netserve.Files{Dir: bundles}, Log: log.New(io.Discard, "", 0)}
	go func() { served <- srv.Serve(sctx, l) }()
	b.Cleanup(func() { stop(); <-served })
	httpProxy := startCountingProxy(b, l.Addr().String())

	fromRegistry := func(tag string) openFunc {
		return func(ctx context.Context, rt http.RoundTripper) (update.Manifest, func(update.Payload) string, *http.Client, error) {
			ref, err := registry.ParseRef(regProxy.addr + "/fleet/bench:" + tag)
			if err != nil {
				return update.Manifest{}, nil, nil, err
			}
			c := registry.New(nil, rt, true)
			bu, err := c.Open(ctx, ref, keys)
			if err != nil {
				return update.Manifest{}, nil, nil, err
			}
			return bu.Manifest, func(p update.Payload) string { return c.PayloadURL(bu, p) }, c.HTTP, nil
		}
	}
	fromServe := func(dir string) openFunc {
		return func(ctx context.Context, rt http.RoundTripper) (update.Manifest, func(update.Payload) string, *http.Client, error) {
			base := "http://" + httpProxy.addr + "/" + dir + "/"
			c := &http.Client{Transport: rt}
			mb, err := getAll(ctx, c, base+update.ManifestFile)
			if err != nil {
				return update.Manifest{}, nil, nil, err
			}
			sig, err := getAll(ctx, c, base+update.SignatureFile)
			if err != nil {
				return update.Manifest{}, nil, nil, err
			}
			m, err := update.Verify(mb, sig, keys)
			if err != nil {
				return update.Manifest{}, nil, nil, err
			}
			return m, func(p update.Payload) string { return base + p.Name }, c, nil
		}
	}

	type row struct {
		name  string
		proxy *countingProxy
		open  openFunc
		have  *update.Manifest
	}
	rows := []row{
		{"registry full", regProxy, fromRegistry("v2"), nil},
		{"serve full", httpProxy, fromServe("v2"), nil},
		{"registry incremental", regProxy, fromRegistry("v2"), &m1},
		{"serve incremental", httpProxy, fromServe("v2"), &m1},
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "%-22s %5s %7s %10s %14s %8s %14s\n", "", "nodes", "wall s", "agg MB/s", "MB transferred", "requests", "payload MB/node")
	for _, r := range rows {
		before := r.proxy.sent.Load()
		res := runFleet(b, nodes, nodeBase, r.open, r.have)
		sent := r.proxy.sent.Load() - before
		fmt.Fprintf(&out, "%-22s %5d %7.2f %10.0f %14.1f %8d %14.1f\n", r.name, nodes, res.wall.Seconds(),
			float64(sent)/1e6/res.wall.Seconds(), float64(sent)/1e6, res.requests, float64(res.payload)/1e6/float64(nodes))
	}
	fmt.Print(out.String())
}

// openFunc fetches the signed manifest through rt and says where each
// payload is read and with which client.
type openFunc func(ctx context.Context, rt http.RoundTripper) (update.Manifest, func(update.Payload) string, *http.Client, error)

type fleetResult struct {
	wall     time.Duration
	requests int64
	payload  int64 // payload bytes the nodes wrote
}

// runFleet runs nodes at once, each with its own transport (so its own
// connections) and directory, and waits for all of them.
func runFleet(b *testing.B, nodes int, base string, open openFunc, have *update.Manifest) fleetResult {
	dir, err := os.MkdirTemp(base, "mkimage-bench-fleet-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	var requests, payload atomic.Int64
	errs := make(chan error, nodes)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rt := &countingTransport{base: http.DefaultTransport.(*http.Transport).Clone(), n: &requests}
			defer rt.base.CloseIdleConnections()
			ndir := filepath.Join(dir, fmt.Sprintf("node%02d", i))
			n, err := fleetNode(context.Background(), rt, ndir, open, have)
			payload.Add(n)
			if err != nil {
				errs <- fmt.Errorf("node %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return fleetResult{wall: wall, requests: requests.Load(), payload: payload.Load()}
}

// fleetNode is one node: the signed manifest, then the payloads a node
// holding have (nil: nothing) needs, as internal/node/apply picks them
// (the incremental root from have, else the full one; the boot files
// have lacks), each downloaded with netfetch. It returns the bytes
// written.
func fleetNode(ctx context.Context, rt *countingTransport, dir string, open openFunc, have *update.Manifest) (int64, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	m, url, client, err := open(ctx, rt)
	if err != nil {
		return 0, err
	}
	haveBoot := map[string]bool{}
	if have != nil {
		for _, p := range have.Payloads {
			if p.Kind == update.KindBoot {
				haveBoot[p.SHA256] = true
			}
		}
	}
	var need []update.Payload
	for _, p := range m.Payloads {
		switch {
		case p.Kind == update.KindRootFull && have == nil,
			p.Kind == update.KindRootIncremental && have != nil && p.Parent == have.ID,
			p.Kind == update.KindBoot && !haveBoot[p.SHA256]:
			need = append(need, p)
		}
	}
	f := &netfetch.Fetcher{Client: client}
	var n int64
	for _, p := range need {
		if err := f.Download(ctx, url(p), filepath.Join(dir, p.Name), netfetch.Want{Size: p.Size, SHA256: p.SHA256}); err != nil {
			return n, err
		}
		n += p.Size
	}
	return n, nil
}

// getAll GETs a small file.
func getAll(ctx context.Context, c *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, update.MaxManifestSize))
}

// fleetVersions are v1 and v2 of a node of realistic size: a 24 MiB
// kernel, an 8 MiB initramfs, a device tree and a 40 MiB root (busybox,
// libraries, a few large files); v2 changes one 1 MiB library and a
// text file in the root, and the initramfs. Content is pseudo-random (it
// does not compress, as a packed root mostly does not).
func fleetVersions(b *testing.B) (*bundle.Version, *bundle.Version) {
	epoch := time.Unix(1700000000, 0)
	random := func(seed uint64, n int64) []byte {
		r, _ := fstreetest.Random(seed, n).Open()
		d, err := io.ReadAll(r)
		if err != nil {
			b.Fatal(err)
		}
		return d
	}
	file := func(seed uint64, n int64) *fstree.Inode {
		return &fstree.Inode{Mode: fstree.ModeRegular | 0o755, Content: fstreetest.Random(seed, n), Mtime: epoch, Atime: epoch, Ctime: epoch}
	}
	tr := fstree.New(epoch)
	fstreetest.Put(b, tr, "etc/motd", fstree.NewFile(0o644, []byte("version 1\n"), epoch), epoch)
	fstreetest.Put(b, tr, "bin/busybox", file(1, 2<<20), epoch)
	for i := range 20 {
		fstreetest.Put(b, tr, fmt.Sprintf("usr/lib/lib%02d.so", i), file(uint64(100+i), 1<<20), epoch)
	}
	for i := range 3 {
		fstreetest.Put(b, tr, fmt.Sprintf("usr/share/big%d", i), file(uint64(200+i), 6<<20), epoch)
	}
	v1 := &bundle.Version{
		Board: "qemu-virt", Cmdline: "console=ttyAMA0 root=LABEL=root", Created: epoch,
		Kernel: random(2, 24<<20), Initrd: random(3, 8<<20), DTB: random(4, 64<<10), Root: tr,
	}
	v2 := *v1
	later := epoch.Add(time.Hour)
	v2.Root = tr.Clone()
	fstreetest.Put(b, v2.Root, "etc/motd", fstree.NewFile(0o644, []byte("version 2\n"), later), later)
	fstreetest.Put(b, v2.Root, "usr/lib/lib07.so", &fstree.Inode{Mode: fstree.ModeRegular | 0o755, Content: fstreetest.Random(307, 1<<20), Mtime: later, Atime: later, Ctime: later}, later)
	v2.Initrd = random(5, 8<<20)
	v2.Created = later
	return v1, &v2
}

func payloadSizes(m update.Manifest) string {
	s := ""
	for _, p := range m.Payloads {
		s += fmt.Sprintf(" %s %.1f MB", p.Name, float64(p.Size)/1e6)
	}
	return s
}

// countingTransport counts the requests a node makes.
type countingTransport struct {
	base *http.Transport
	n    *atomic.Int64
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.RoundTrip(req)
}

// countingProxy forwards TCP connections on addr to a server, counting
// the bytes the server sends.
type countingProxy struct {
	addr string
	sent atomic.Int64
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

func startCountingProxy(b *testing.B, upstream string) *countingProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	p := &countingProxy{addr: l.Addr().String()}
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	track := func(c net.Conn, add bool) {
		mu.Lock()
		defer mu.Unlock()
		if add {
			conns[c] = true
		} else {
			delete(conns, c)
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				u, err := net.Dial("tcp", upstream)
				if err != nil {
					return
				}
				defer u.Close()
				track(c, true)
				track(u, true)
				defer track(c, false)
				defer track(u, false)
				done := make(chan struct{})
				go func() {
					io.Copy(u, c)
					u.(*net.TCPConn).CloseWrite()
					close(done)
				}()
				io.Copy(countingWriter{c, &p.sent}, u)
				c.(*net.TCPConn).CloseWrite()
				<-done
			}()
		}
	}()
	b.Cleanup(func() {
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return p
}
