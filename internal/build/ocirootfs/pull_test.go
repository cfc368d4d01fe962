package ocirootfs

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/build/ocirootfs/ocitest"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/update"
	"github.com/mkimage/mkimage/internal/update/registry"
	"github.com/mkimage/mkimage/internal/update/registry/registrytest"
)

// TestPullFromRegistry: Debian's registry holds a two-platform image
// pushed with the project's client; the arm64 one is pulled, unpacked
// with its whiteouts and given an LXC config; a second pull takes the
// blobs from the cache, and a blob the registry serves damaged is
// refused and not cached.
func TestPullFromRegistry(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ref, err := registry.ParseRef(reg.Host() + "/apps/web:v1")
	if err != nil {
		t.Fatal(err)
	}
	c := registry.New(nil, nil, false)
	pushed := ocitest.Push(t, c, ref)
	ctx := context.Background()
	cache := t.TempDir()
	p := &Puller{Client: c, Cache: cache, Log: t.Logf}

	blobGETs := func() int { return len(reg.Requests("GET /v2/apps/web/blobs/")) }
	img, err := p.Pull(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if img.Digest != pushed.Arm64 {
		t.Errorf("pulled manifest %s, want the arm64 one %s", img.Digest, pushed.Arm64)
	}
	if n := blobGETs(); n != 3 {
		t.Errorf("%d blob GETs, want 3 (config and two layers)", n)
	}
	tree, err := img.Tree(0)
	if err != nil {
		t.Fatal(err)
	}
	want := "bin/ bin/app bin/app-link bin/sh bin/tool etc/ etc/group etc/passwd srv/ srv/new"
	if got := names(tree); got != want {
		t.Errorf("tree %s\nwant %s", got, want)
	}
	app, _ := tree.Lookup("bin/app")
	if l, _ := tree.Lookup("bin/app-link"); l != app || app.Mode != fstree.ModeRegular|0o755 {
		t.Errorf("bin/app-link is not bin/app's hard link, or bin/app's mode is %o", app.Mode)
	}
	if string(app.Xattrs["security.capability"]) != "\x01\x00\x00\x02" {
		t.Errorf("bin/app xattrs %q", app.Xattrs)
	}
	if s, _ := tree.Lookup("bin/sh"); s.Target != "/bin/app" {
		t.Errorf("bin/sh -> %q", s.Target)
	}
	srv, _ := tree.Lookup("srv")
	if srv.Uid != 1000 || srv.Gid != 1001 || srv.Mode&fstree.ModePerm != 0o750 || !srv.Mtime.Equal(ocitest.Created) {
		t.Errorf("srv: %d:%d %o %v", srv.Uid, srv.Gid, srv.Mode, srv.Mtime)
	}
	if !tree.Root.Mtime.Equal(ocitest.Created) {
		t.Errorf("root time %v, want the image's creation %v", tree.Root.Mtime, ocitest.Created)
	}

	conf, err := LXCConfig("web", "oci:"+ref.String(), img, tree)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{
		"lxc.include = /usr/share/lxc/config/common.conf\n",
		"lxc.apparmor.profile = generated\n",
		"lxc.uts.name = web\n",
		"lxc.rootfs.path = dir:/var/lib/lxc/web/rootfs\n",
		"lxc.init.cmd = /bin/app --greeting 'hello world' it's\n",
		"lxc.init.cwd = /srv\n",
		"lxc.init.uid = 1000\nlxc.init.gid = 1001\n",
		"lxc.environment = PATH=/usr/bin:/bin\nlxc.environment = GREETING=hi there\n",
		"lxc.start.auto = 0\n",
	} {
		if !strings.Contains(string(conf), l) {
			t.Errorf("config lacks %q:\n%s", l, conf)
		}
	}
	if strings.Contains(string(conf), "unconfined") || strings.Contains(string(conf), "lxc.net.") {
		t.Errorf("config is unconfined or has network lines:\n%s", conf)
	}

	// Again: the manifests are asked for (a tag may move), no blob is.
	before := blobGETs()
	img2, err := p.Pull(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if n := blobGETs() - before; n != 0 {
		t.Errorf("second pull: %d blob GETs, want 0", n)
	}
	// The same image gives the same tree, to the hash.
	tree2, err := img2.Tree(0)
	if err != nil {
		t.Fatal(err)
	}
	h1, _ := tree.Hash()
	h2, _ := tree2.Hash()
	if h1 != h2 {
		t.Errorf("same image, trees %s and %s", h1, h2)
	}

	// Pinned by digest: the index's digest gives the same image.
	pinned := ref
	pinned.Tag, pinned.Digest = "", pushed.IndexDigest
	if img3, err := p.Pull(ctx, pinned); err != nil || img3.Digest != img.Digest {
		t.Errorf("pull by index digest: %v", err)
	}
	// A digest the registry does not have is refused.
	pinned.Digest = registry.DigestOf([]byte("no such manifest"))
	if _, err := p.Pull(ctx, pinned); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("pull of an unknown digest: %v, want not found", err)
	}

	// A damaged blob in the registry: refused, and nothing of it left
	// in a fresh cache.
	reg.Corrupt(registry.SumOf(pushed.Layers[1].Digest))
	fresh := t.TempDir()
	p2 := &Puller{Client: c, Cache: fresh}
	if _, err := p2.Pull(ctx, ref); !errors.Is(err, update.ErrInvalid) || !strings.Contains(err.Error(), pushed.Layers[1].Digest) {
		t.Errorf("damaged layer: %v, want it refused by digest", err)
	}
	ents, _ := os.ReadDir(fresh)
	for _, e := range ents {
		if strings.Contains(e.Name(), registry.SumOf(pushed.Layers[1].Digest)) || strings.HasPrefix(e.Name(), ".tmp") {
			t.Errorf("cache holds %s after a refused download", e.Name())
		}
	}
	// A damaged cache entry is not used: its blob is downloaded again
	// (here the registry's copy is damaged too, so the pull fails).
	cached := filepath.Join(cache, "sha256-"+registry.SumOf(pushed.Layers[1].Digest))
	if err := os.WriteFile(cached, []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Pull(ctx, ref); !errors.Is(err, update.ErrInvalid) {
		t.Errorf("pull over a damaged cache entry: %v, want the download's digest error", err)
	}
}

// TestPlace: the container lands under var/lib/lxc/NAME with its
// config; a second one of the same name is refused.
func TestPlace(t *testing.T) {
	epoch := time.Unix(1700000000, 0)
	root := fstree.New(epoch)
	ct := fstree.New(epoch)
	if err := ct.Put("hello", fstree.NewFile(0o644, []byte("hi"), epoch)); err != nil {
		t.Fatal(err)
	}
	if err := Place(root, "web", ct, []byte("lxc.uts.name = web\n"), epoch); err != nil {
		t.Fatal(err)
	}
	if got := names(root); got != "var/ var/lib/ var/lib/lxc/ var/lib/lxc/web/ var/lib/lxc/web/config var/lib/lxc/web/rootfs/ var/lib/lxc/web/rootfs/hello" {
		t.Errorf("root: %s", got)
	}
	d, _ := root.Lookup("var/lib/lxc/web")
	c, _ := root.Lookup("var/lib/lxc/web/config")
	if d.Mode&fstree.ModePerm != 0o770 || c.Mode&fstree.ModePerm != 0o640 {
		t.Errorf("modes %o %o", d.Mode, c.Mode)
	}
	if err := Place(root, "web", ct, nil, epoch); err == nil {
		t.Error("placing web twice: no error")
	}
}

// names lists a tree's paths in walk order, directories with a "/".
func names(t *fstree.Tree) string {
	var out []string
	t.Walk(func(p string, n *fstree.Inode) error {
		if p == "" {
			return nil
		}
		if n.IsDir() {
			p += "/"
		}
		out = append(out, p)
		return nil
	})
	return strings.Join(out, " ")
}

// cutTransport cuts the body of every layer GET after 100 bytes, as a
// connection lost mid-download would.
type cutTransport struct{ base http.RoundTripper }

func (c cutTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(req)
	if err == nil && req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/") && resp.ContentLength > 300 {
		resp.Body = &cutBody{rc: resp.Body, left: 100}
	}
	return resp, err
}

type cutBody struct {
	rc   io.ReadCloser
	left int
}

func (b *cutBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.ErrUnexpectedEOF
	}
	n, err := b.rc.Read(p[:min(len(p), b.left)])
	b.left -= n
	return n, err
}

func (b *cutBody) Close() error { return b.rc.Close() }

// TestCutDownload: a download cut short fails the pull and leaves
// nothing in the cache that a later pull would take for the blob; the
// next pull downloads it whole.
func TestCutDownload(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ref, err := registry.ParseRef(reg.Host() + "/apps/web:v1")
	if err != nil {
		t.Fatal(err)
	}
	ocitest.Push(t, registry.New(nil, nil, false), ref)
	cache := t.TempDir()
	cut := &Puller{Client: registry.New(nil, cutTransport{http.DefaultTransport}, false), Cache: cache}
	if _, err := cut.Pull(context.Background(), ref); err == nil || !strings.Contains(err.Error(), "unexpected EOF") {
		t.Fatalf("cut download: %v", err)
	}
	ents, _ := os.ReadDir(cache)
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(cache, e.Name()))
		if strings.HasPrefix(e.Name(), ".tmp") || registry.DigestOf(b) != "sha256:"+strings.TrimPrefix(e.Name(), "sha256-") {
			t.Errorf("cache holds %s (%d bytes) after a cut download", e.Name(), len(b))
		}
	}
	whole := &Puller{Client: registry.New(nil, nil, false), Cache: cache}
	img, err := whole.Pull(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.Tree(0); err != nil {
		t.Fatal(err)
	}
}
