// Package fetchtest is what the tests of netfetch, netroot and
// netinstall share: the project's own HTTP server over a directory on
// loopback, and an image's block map and sha256 written beside it.
// Tests only: it pulls in the server, which a node never needs.
package fetchtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"

	"github.com/mkimage/mkimage/internal/bmap"
	"github.com/mkimage/mkimage/internal/server/netserve"
)

// Serve serves dir over HTTP on 127.0.0.1 until the test ends and
// returns the server's address.
func Serve(t testing.TB, dir string) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		(&netserve.HTTP{Files: netserve.Files{Dir: dir}, Log: log.New(io.Discard, "", 0)}).Serve(ctx, l)
		close(done)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return netip.MustParseAddrPort(l.Addr().String())
}

// URL is name on the server at ap as the kernel command line gives it:
// no host, so the node uses its DHCP server ("http://:PORT/name").
func URL(ap netip.AddrPort, name string) string {
	return "http://:" + strconv.Itoa(int(ap.Port())) + "/" + name
}

// WriteMap writes path+".bmap" for the image at path with the given
// mapped extents and returns the whole image's sha256 (hex).
func WriteMap(t testing.TB, path string, ext []bmap.Extent) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := bmap.Create(f, fi.Size(), ext)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.WriteFile(path + ".bmap"); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, fi.Size())); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
