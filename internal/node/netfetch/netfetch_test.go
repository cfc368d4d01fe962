package netfetch

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/bmap"
	"github.com/mkimage/mkimage/internal/node/netfetch/fetchtest"
)

// image writes a 1 MiB image with data in two places and its bmap into a
// served directory; it returns the directory, the image and its sha256.
func image(t *testing.T) (string, []byte, string) {
	t.Helper()
	dir := t.TempDir()
	img := make([]byte, 1<<20)
	for i := 0; i < 10000; i++ {
		img[i] = byte(i)
	}
	copy(img[600000:], bytes.Repeat([]byte("data"), 5000))
	if err := os.WriteFile(filepath.Join(dir, "node.img"), img, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := fetchtest.WriteMap(t, filepath.Join(dir, "node.img"), []bmap.Extent{{Off: 0, Len: 10000}, {Off: 600000, Len: 20000}})
	return dir, img, sum
}

type memDev struct{ b []byte }

func (d *memDev) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(d.b)) {
		return 0, io.EOF
	}
	n := copy(p, d.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (d *memDev) WriteAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > int64(len(d.b)) {
		return 0, io.ErrShortWrite
	}
	return copy(d.b[off:], p), nil
}

func TestFetch(t *testing.T) {
	dir, img, sum := image(t)
	ap := fetchtest.Serve(t, dir)
	u, err := ResolveURL(fetchtest.URL(ap, "node.img"), ap.Addr())
	if err != nil {
		t.Fatal(err)
	}
	f := &Fetcher{}

	// A used card: garbage everywhere. Unmapped blocks stay garbage (like
	// bmaptool), and the whole-image check still passes.
	card := &memDev{b: bytes.Repeat([]byte{0xa5}, 2<<20)}
	synced := false
	m, err := f.Fetch(context.Background(), u, sum, card, func() error { synced = true; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if !synced || m.ImageSize != int64(len(img)) {
		t.Errorf("synced %v, size %d", synced, m.ImageSize)
	}
	if !bytes.Equal(card.b[:10000], img[:10000]) || !bytes.Equal(card.b[600000:620000], img[600000:620000]) {
		t.Error("mapped data not written")
	}
	if card.b[300000] != 0xa5 {
		t.Error("an unmapped block was written")
	}

	for _, c := range []struct {
		name string
		sum  string
		url  string
		dev  Device
		want string
	}{
		{"wrong image sum", strings.Repeat("0", 64), u, &memDev{b: make([]byte, 2<<20)}, "image sha256 is " + sum},
		{"bad sum", "xyz", u, &memDev{b: make([]byte, 2<<20)}, `sha256 "xyz": want 64 hex digits`},
		{"missing image", sum, strings.Replace(u, "node.img", "nope.img", 1), &memDev{b: make([]byte, 2<<20)}, "404"},
		{"device too small", sum, u, &memDev{b: make([]byte, 500000)}, "short write"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := f.Fetch(context.Background(), c.url, c.sum, c.dev, nil); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}

	// A map that hides a data range fails the final check.
	m2, _ := bmap.Create(bytes.NewReader(img), int64(len(img)), []bmap.Extent{{Off: 0, Len: 10000}})
	m2.WriteFile(filepath.Join(dir, "node.img.bmap"))
	if _, err := f.Fetch(context.Background(), u, sum, &memDev{b: make([]byte, 2<<20)}, nil); err == nil || !strings.Contains(err.Error(), "image sha256 is") {
		t.Fatalf("short map: %v", err)
	}
	// A range whose content differs from the map fails at once.
	bad := append([]byte(nil), img...)
	bad[5] ^= 1
	os.WriteFile(filepath.Join(dir, "node.img"), bad, 0o644)
	m.WriteFile(filepath.Join(dir, "node.img.bmap"))
	if _, err := f.Fetch(context.Background(), u, sum, &memDev{b: make([]byte, 2<<20)}, nil); err == nil || !strings.Contains(err.Error(), "blocks 0-2") {
		t.Fatalf("corrupt range: %v", err)
	}
}

// TestOpen: the shared start of netroot and netinstall resolves the
// host-less URL against the lease's server, rejects a bad sum before any
// request, reads the map, and writes and verifies through it.
func TestOpen(t *testing.T) {
	dir, img, sum := image(t)
	ap := fetchtest.Serve(t, dir)
	var lines []string
	logf := func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) }
	src, err := Open(context.Background(), Image{URL: fetchtest.URL(ap, "node.img"), SHA256: sum, Server: ap.Addr()}, &Fetcher{Log: logf})
	if err != nil {
		t.Fatal(err)
	}
	if want := "http://" + ap.String() + "/node.img"; src.URL != want || src.Map.ImageSize != int64(len(img)) {
		t.Errorf("URL %q size %d; want %q, %d", src.URL, src.Map.ImageSize, want, len(img))
	}
	dev := &memDev{b: make([]byte, 1<<20)}
	if err := src.WriteTo(context.Background(), dev, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dev.b, img) {
		t.Error("written image differs")
	}
	if !strings.Contains(strings.Join(lines, "\n"), "sha256 "+sum+" verified") {
		t.Errorf("log lacks the verified line: %q", lines)
	}
	if _, err := Open(context.Background(), Image{URL: fetchtest.URL(ap, "node.img"), SHA256: "abc", Server: ap.Addr()}, &Fetcher{}); err == nil || !strings.Contains(err.Error(), "want 64 hex digits") {
		t.Errorf("bad sum: %v", err)
	}
	if _, err := Open(context.Background(), Image{URL: fetchtest.URL(ap, "node.img"), SHA256: sum}, &Fetcher{}); err == nil || !strings.Contains(err.Error(), "no DHCP server address") {
		t.Errorf("no server: %v", err)
	}
	if _, err := Open(context.Background(), Image{URL: fetchtest.URL(ap, "gone.img"), SHA256: sum, Server: ap.Addr()}, &Fetcher{}); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("missing image: %v", err)
	}
}

func TestResolveURL(t *testing.T) {
	srv := netip.MustParseAddr("10.78.0.1")
	for _, c := range []struct{ in, want string }{
		{"http://:80/root.img", "http://10.78.0.1:80/root.img"},
		{"http:///root.img", "http://10.78.0.1:80/root.img"},
		{"http://:8080/a/b.img", "http://10.78.0.1:8080/a/b.img"},
		{"http://192.0.2.7/root.img", "http://192.0.2.7/root.img"},
		{"ftp://x/root.img", ""},
		{"http://:80", ""},
	} {
		got, err := ResolveURL(c.in, srv)
		if c.want == "" {
			if err == nil {
				t.Errorf("ResolveURL(%q) = %q, want an error", c.in, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ResolveURL(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	if _, err := ResolveURL("http://:80/x", netip.Addr{}); err == nil {
		t.Error("no server and no host accepted")
	}
}
