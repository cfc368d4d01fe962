// Package netfetch copies an image served over HTTP onto a file or block
// device through its block map: it reads IMAGE.bmap, fetches only the
// mapped ranges with HTTP Range requests, checks each range's sha256 from
// the map as it arrives, and finally checks the whole image's sha256 (the
// one on the kernel command line) over what the destination holds, with
// unmapped blocks counted as zeros. The image's sha256 therefore vouches
// for the map too: a map that leaves out data fails the final check.
//
// From a signed netboot tree (the node's initramfs holds netboot keys:
// LoadKeys), the image's size and sha256 and its map's come from the
// tree's images.json, checked against the keys before anything else is
// read; the command line's sha256 is then not used.
//
// Every request is watched: one that receives nothing for a while is
// cut and resumed where it stopped, as is one whose connection drops,
// with backoff between attempts (Fetcher).
//
// It runs on the node (nodeinit's netroot and netinstall): standard
// library, internal/bmap and internal/update only.
package netfetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/bmap"
	"github.com/mkimage/mkimage/internal/update"
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
	// Patience (zero: the Default values): a request that receives
	// nothing for Stall is cut and resumed; a failed request is retried
	// Retries times (negative: none), waiting twice as long each time
	// from Backoff up to MaxBackoff.
	Stall               time.Duration
	Retries             int
	Backoff, MaxBackoff time.Duration
	// StepRetries bounds Persist's attempts (0: until its context ends).
	StepRetries int
}

func (f *Fetcher) logf(format string, a ...any) {
	if f.Log != nil {
		f.Log(format, a...)
	}
}

func (f *Fetcher) client() *http.Client {
	if f.Client == nil {
		return http.DefaultClient
	}
	return f.Client
}

// retry runs try until it succeeds, fails for good (errPermanent), ctx
// ends or limit retries are used up (0: no limit; negative: none),
// waiting with backoff in between and logging why and next(), what the
// next attempt does.
func (f *Fetcher) retry(ctx context.Context, limit int, try func() error, next func() string) error {
	backoff, maxBackoff := f.Backoff, f.MaxBackoff
	if backoff == 0 {
		backoff = DefaultBackoff
	}
	if maxBackoff == 0 {
		maxBackoff = DefaultMaxBackoff
	}
	for attempt := 1; ; attempt++ {
		err := try()
		if err == nil || errors.As(err, new(errPermanent)) || ctx.Err() != nil || limit < 0 || (limit > 0 && attempt > limit) {
			return err
		}
		of := ""
		if limit > 0 {
			of = fmt.Sprintf(" of %d", limit+1)
		}
		f.logf("%v; %s in %v (attempt %d%s)", err, next(), backoff, attempt+1, of)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (after %w)", ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// retries is Retries with its zero value made the default.
func (f *Fetcher) retries() int {
	if f.Retries == 0 {
		return DefaultRetries
	}
	return f.Retries
}

// Persist runs step until it succeeds or ctx ends (or StepRetries is
// used up): a node that installs its card or boots a diskless root has
// nothing better to do than to try again, so once the server is fixed
// the node goes on without a reboot. Every failure is logged with the
// wait before the next attempt.
func (f *Fetcher) Persist(ctx context.Context, what string, step func() error) error {
	return f.retry(ctx, f.StepRetries, func() error {
		if err := step(); err != nil {
			// Not errPermanent, whatever it wraps: the server may be fixed.
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}, func() string { return "trying again" })
}

// watch returns a context that is cancelled with the cause "nothing
// received for STALL" unless poke is called at least every Stall, and
// the function that releases it.
func (f *Fetcher) watch(ctx context.Context) (context.Context, func(), func()) {
	stall := f.Stall
	if stall == 0 {
		stall = DefaultStall
	}
	ctx, cancel := context.WithCancelCause(ctx)
	timer := time.AfterFunc(stall, func() { cancel(fmt.Errorf("nothing received for %v", stall)) })
	return ctx, func() { timer.Reset(stall) }, func() { timer.Stop(); cancel(nil) }
}

// get makes one request; rng, if set, is a Range header and asks for
// 206 Partial Content. Server errors are worth a retry; other statuses
// are permanent.
func (f *Fetcher) get(ctx context.Context, u string, rng string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, errPermanent{err}
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := f.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, cause(ctx, err))
	}
	want := http.StatusOK
	if rng != "" {
		want = http.StatusPartialContent
	}
	if resp.StatusCode != want {
		resp.Body.Close()
		err := fmt.Errorf("GET %s %s: %s (want %d)", u, rng, resp.Status, want)
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			return nil, err
		}
		if resp.StatusCode == http.StatusOK {
			err = fmt.Errorf("%w: the server ignores Range requests (serve the tree with mkimage serve)", err)
		}
		return nil, errPermanent{err}
	}
	return resp, nil
}

// ErrTooBig is Small's error for a file larger than its limit.
var ErrTooBig = errors.New("file too big")

// Small fetches a whole file of at most limit bytes (a manifest, a
// signature, a map), retrying from the start after a stall, a dropped
// connection or a server error.
func (f *Fetcher) Small(ctx context.Context, u string, limit int64) ([]byte, error) {
	var data []byte
	err := f.retry(ctx, f.retries(), func() error {
		ctx, poke, stop := f.watch(ctx)
		defer stop()
		resp, err := f.get(ctx, u, "")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		for buf := make([]byte, 32<<10); ; {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			poke()
			if int64(b.Len()) > limit {
				return errPermanent{fmt.Errorf("GET %s: %w: more than %d bytes", u, ErrTooBig, limit)}
			}
			if err == io.EOF {
				data = b.Bytes()
				return nil
			}
			if err != nil {
				return fmt.Errorf("GET %s: %w", u, cause(ctx, err))
			}
		}
	}, func() string { return "retrying" })
	return data, err
}

// maxMapSize bounds a block map: a 64 GiB card in 4 MiB ranges.
const maxMapSize = 64 << 20

// Map fetches and parses imageURL+".bmap".
func (f *Fetcher) Map(ctx context.Context, imageURL string) (*bmap.Map, error) {
	data, err := f.Small(ctx, imageURL+".bmap", maxMapSize)
	if err != nil {
		return nil, err
	}
	return parseMap(imageURL, data)
}

func parseMap(imageURL string, data []byte) (*bmap.Map, error) {
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

// write fetches each mapped range into memory and checks it against the
// map before writing it: a range that does not match leaves dst as it
// was (ranges longer than bmap.CheckedRange, which netboot's maps do not
// have, are written a part at a time and checked at their end).
func (f *Fetcher) write(ctx context.Context, imageURL, sum string, m *bmap.Map, dst Device, sync func() error) error {
	f.logf("fetching %s: %d of %d bytes mapped in %d ranges", imageURL, m.MappedBytes(), m.ImageSize, len(m.Ranges))
	start := time.Now()
	buf := make([]byte, bmap.CheckedRange)
	for _, r := range m.Ranges {
		off, end := m.Bytes(r)
		h := m.NewHash()
		for pos := off; pos < end; {
			n := min(int64(len(buf)), end-pos)
			if err := f.fetchRange(ctx, imageURL, pos, buf[:n]); err != nil {
				return fmt.Errorf("blocks %d-%d of %s: %w", r.First, r.Last, imageURL, err)
			}
			h.Write(buf[:n])
			if got := hex.EncodeToString(h.Sum(nil)); pos+n == end && got != r.Sum {
				return fmt.Errorf("blocks %d-%d of %s: %s %s, the map says %s: not written (the server's image differs from its map)", r.First, r.Last, imageURL, m.ChecksumType, got, r.Sum)
			}
			if _, err := dst.WriteAt(buf[:n], pos); err != nil {
				return fmt.Errorf("blocks %d-%d of %s: %w", r.First, r.Last, imageURL, err)
			}
			pos += n
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

// fetchRange fills buf with the image's bytes from off on. A request
// that stalls (nothing for Stall) or whose connection drops is resumed
// from the first byte not yet received, with backoff between attempts.
func (f *Fetcher) fetchRange(ctx context.Context, u string, off int64, buf []byte) error {
	have := 0
	return f.retry(ctx, f.retries(), func() error {
		n, err := f.readRange(ctx, u, off+int64(have), buf[have:])
		have += n
		return err
	}, func() string { return fmt.Sprintf("resuming at byte %d", off+int64(have)) })
}

// readRange makes one request for len(buf) bytes from off and reads
// what arrives, up to a stall or a drop.
func (f *Fetcher) readRange(ctx context.Context, u string, off int64, buf []byte) (int, error) {
	ctx, poke, stop := f.watch(ctx)
	defer stop()
	end := off + int64(len(buf))
	resp, err := f.get(ctx, u, fmt.Sprintf("bytes=%d-%d", off, end-1))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.ContentLength >= 0 && resp.ContentLength != int64(len(buf)) {
		return 0, errPermanent{fmt.Errorf("GET %s bytes %d-%d: the server sends %d bytes, want %d", u, off, end-1, resp.ContentLength, len(buf))}
	}
	have := 0
	for have < len(buf) {
		n, err := resp.Body.Read(buf[have:])
		have += n
		poke()
		if (err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF)) && have < len(buf) {
			return have, fmt.Errorf("GET %s: connection ended at byte %d of %d-%d", u, off+int64(have), off, end-1)
		}
		if err != nil && err != io.EOF {
			return have, fmt.Errorf("GET %s: at byte %d of %d-%d: %w", u, off+int64(have), off, end-1, cause(ctx, err))
		}
	}
	return have, nil
}

// Source is an image on the boot server, its URL resolved and its block
// map read (and, from a signed tree, checked): what netroot and
// netinstall both start from.
type Source struct {
	URL    string // resolved, with the server's address
	SHA256 string // the whole image's: from images.json, or the command line
	Map    *bmap.Map
	f      *Fetcher
}

// Timeouts of the node's HTTP client: a server that stops answering
// fails the request with a reason instead of hanging it.
const (
	dialTimeout   = 10 * time.Second
	headerTimeout = 30 * time.Second
)

// Image is what the kernel command line and the initramfs say to fetch.
type Image struct {
	URL    string     // from the command line, maybe with no host (see ResolveURL)
	SHA256 string     // from the command line: used only without Keys
	Server netip.Addr // from the DHCP lease
	// Keys are the netboot keys baked into the initramfs (LoadKeys).
	// With any, the image is taken only as the tree's signed images.json
	// lists it, and SHA256 is not used.
	Keys []update.PublicKey
}

// Open resolves the image's URL, checks the signed images.json when
// img.Keys are set, and reads (and checks) the image's block map. f
// gives the patience and the log; its Client, if nil, is set to the
// node's (with dial and header timeouts).
func Open(ctx context.Context, img Image, f *Fetcher) (*Source, error) {
	u, err := ResolveURL(img.URL, img.Server)
	if err != nil {
		return nil, err
	}
	if f.Client == nil {
		f.Client = &http.Client{Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: dialTimeout}).DialContext,
			ResponseHeaderTimeout: headerTimeout,
		}}
	}
	if len(img.Keys) > 0 {
		return f.openSigned(ctx, u, img.Keys)
	}
	if err := CheckSum(img.SHA256); err != nil {
		return nil, fmt.Errorf("image %s: %w", img.URL, err)
	}
	m, err := f.Map(ctx, u)
	if err != nil {
		return nil, err
	}
	return &Source{URL: u, SHA256: img.SHA256, Map: m, f: f}, nil
}

// WriteTo writes the image to dst through its map and verifies it (see
// Fetcher.Fetch).
func (s *Source) WriteTo(ctx context.Context, dst Device, sync func() error) error {
	return s.f.write(ctx, s.URL, s.SHA256, s.Map, dst, sync)
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
