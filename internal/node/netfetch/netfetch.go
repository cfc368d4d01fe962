// Package netfetch copies an image served over HTTP onto a file or block
// device through its block map: it reads IMAGE.bmap, fetches only the
// mapped ranges with HTTP Range requests, checks each range's sha256 from
// the map as it arrives, and finally checks the whole image's sha256 (the
// one on the kernel command line) over what the destination holds, with
// unmapped blocks counted as zeros. The image's sha256 therefore vouches
// for the map too: a map that leaves out data fails the final check.
//
// It runs on the node (nodeinit's netroot and netinstall): standard
// library and internal/bmap only.
package netfetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/bmap"
)

// Device is what an image is written to: a file or a block device.
type Device interface {
	io.ReaderAt
	io.WriterAt
}

// ResolveURL fills an empty host ("http://:80/root.img") with server,
// the address that handed out the DHCP lease.
func ResolveURL(raw string, server netip.Addr) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Path == "" {
		return "", fmt.Errorf("image URL %q: want http://[HOST][:PORT]/PATH", raw)
	}
	if u.Hostname() == "" {
		if !server.IsValid() {
			return "", fmt.Errorf("image URL %q names no host and no DHCP server address is known", raw)
		}
		port := u.Port()
		if port == "" {
			port = "80"
		}
		u.Host = netip.AddrPortFrom(server, 0).Addr().String() + ":" + port
	}
	return u.String(), nil
}

// CheckSum validates a sha256 given on the command line.
func CheckSum(s string) error {
	if b, err := hex.DecodeString(s); err != nil || len(b) != sha256.Size {
		return fmt.Errorf("sha256 %q: want 64 hex digits", s)
	}
	return nil
}

// Fetcher fetches images.
type Fetcher struct {
	Client *http.Client // nil: http.DefaultClient
	Log    func(format string, a ...any)
	// Download's patience (zero: the Default values).
	Stall               time.Duration
	Retries             int
	Backoff, MaxBackoff time.Duration
}

func (f *Fetcher) logf(format string, a ...any) {
	if f.Log != nil {
		f.Log(format, a...)
	}
}

func (f *Fetcher) get(ctx context.Context, u string, rng string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	c := f.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	want := http.StatusOK
	if rng != "" {
		want = http.StatusPartialContent
	}
	if resp.StatusCode != want {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s %s: %s (want %d)", u, rng, resp.Status, want)
	}
	return resp, nil
}

// Map fetches and parses imageURL+".bmap".
func (f *Fetcher) Map(ctx context.Context, imageURL string) (*bmap.Map, error) {
	resp, err := f.get(ctx, imageURL+".bmap", "")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s.bmap: %w", imageURL, err)
	}
	m, err := bmap.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s.bmap: %w", imageURL, err)
	}
	return m, nil
}

// Fetch writes the image's mapped ranges to dst and checks them, then
// checks the whole image's sha256 over dst (see Verify). sync, if set,
// runs before the final check (flush a block device's cache so the check
// reads what the card holds).
func (f *Fetcher) Fetch(ctx context.Context, imageURL, sum string, dst Device, sync func() error) (*bmap.Map, error) {
	if err := CheckSum(sum); err != nil {
		return nil, err
	}
	m, err := f.Map(ctx, imageURL)
	if err != nil {
		return nil, err
	}
	return m, f.write(ctx, imageURL, sum, m, dst, sync)
}

func (f *Fetcher) write(ctx context.Context, imageURL, sum string, m *bmap.Map, dst Device, sync func() error) error {
	f.logf("fetching %s: %d of %d bytes mapped in %d ranges", imageURL, m.MappedBytes(), m.ImageSize, len(m.Ranges))
	start := time.Now()
	buf := make([]byte, 1<<20)
	for _, r := range m.Ranges {
		off, end := m.Bytes(r)
		resp, err := f.get(ctx, imageURL, fmt.Sprintf("bytes=%d-%d", off, end-1))
		if err != nil {
			return err
		}
		h := m.NewHash()
		n, err := copyAt(dst, off, io.TeeReader(io.LimitReader(resp.Body, end-off), h), buf)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("blocks %d-%d of %s: %w", r.First, r.Last, imageURL, err)
		}
		if n != end-off {
			return fmt.Errorf("blocks %d-%d of %s: got %d of %d bytes", r.First, r.Last, imageURL, n, end-off)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != r.Sum {
			return fmt.Errorf("blocks %d-%d of %s: %s %s, the map says %s", r.First, r.Last, imageURL, m.ChecksumType, got, r.Sum)
		}
	}
	if sync != nil {
		if err := sync(); err != nil {
			return err
		}
	}
	f.logf("fetched %d bytes in %v; checking the image's sha256", m.MappedBytes(), time.Since(start).Round(time.Millisecond))
	if err := Verify(dst, m, sum); err != nil {
		return fmt.Errorf("%s: %w", imageURL, err)
	}
	f.logf("%s: sha256 %s verified", imageURL, sum)
	return nil
}

// Source is an image on the boot server, its URL resolved and its block
// map read: what netroot and netinstall both start from.
type Source struct {
	URL    string // resolved, with the server's address
	SHA256 string // the whole image's, from the command line
	Map    *bmap.Map
	f      *Fetcher
}

// Timeouts of the node's HTTP client: a server that stops answering
// fails the boot with a reason instead of hanging it.
const (
	dialTimeout   = 10 * time.Second
	headerTimeout = 30 * time.Second
)

// Open resolves raw (a command line URL, maybe with no host: see
// ResolveURL) against server, checks sum and reads the image's block
// map. log, if set, gets progress lines.
func Open(ctx context.Context, raw, sum string, server netip.Addr, log func(format string, a ...any)) (*Source, error) {
	u, err := ResolveURL(raw, server)
	if err != nil {
		return nil, err
	}
	if err := CheckSum(sum); err != nil {
		return nil, fmt.Errorf("image %s: %w", raw, err)
	}
	f := &Fetcher{Log: log, Client: &http.Client{Transport: &http.Transport{
		DialContext:           (&net.Dialer{Timeout: dialTimeout}).DialContext,
		ResponseHeaderTimeout: headerTimeout,
	}}}
	m, err := f.Map(ctx, u)
	if err != nil {
		return nil, err
	}
	return &Source{URL: u, SHA256: sum, Map: m, f: f}, nil
}

// WriteTo writes the image to dst through its map and verifies it (see
// Fetcher.Fetch).
func (s *Source) WriteTo(ctx context.Context, dst Device, sync func() error) error {
	return s.f.write(ctx, s.URL, s.SHA256, s.Map, dst, sync)
}

func copyAt(dst io.WriterAt, off int64, src io.Reader, buf []byte) (int64, error) {
	var total int64
	for {
		n, err := io.ReadFull(src, buf)
		if n > 0 {
			if _, werr := dst.WriteAt(buf[:n], off+total); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Verify computes the image's sha256 from dev's mapped ranges with zeros
// in between and compares it with sum.
func Verify(dev io.ReaderAt, m *bmap.Map, sum string) error {
	h := sha256.New()
	buf := make([]byte, 1<<20)
	zeros := make([]byte, 1<<20)
	var pos int64
	hashZeros := func(n int64) {
		for n > 0 {
			k := min(n, int64(len(zeros)))
			h.Write(zeros[:k])
			n -= k
		}
	}
	for _, r := range m.Ranges {
		off, end := m.Bytes(r)
		hashZeros(off - pos)
		n, err := io.CopyBuffer(h, io.NewSectionReader(dev, off, end-off), buf)
		if err != nil {
			return fmt.Errorf("reading back blocks %d-%d: %w", r.First, r.Last, err)
		}
		if n != end-off {
			return fmt.Errorf("reading back blocks %d-%d: device ends after %d bytes", r.First, r.Last, off+n)
		}
		pos = end
	}
	hashZeros(m.ImageSize - pos)
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, sum) {
		return fmt.Errorf("image sha256 is %s, the command line says %s", got, sum)
	}
	return nil
}
