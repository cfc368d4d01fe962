package netfetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/mkimage/mkimage/internal/atomicfile"
)

// Download defaults: a server that sends nothing for Stall is given up
// on; a failed attempt is retried Retries times, waiting twice as long
// each time from Backoff up to MaxBackoff.
const (
	DefaultStall      = 30 * time.Second
	DefaultRetries    = 6
	DefaultBackoff    = time.Second
	DefaultMaxBackoff = 30 * time.Second
)

// Want is what a downloaded file must be: its size and sha256, known
// beforehand from a signed manifest, so a download can be checked as it
// arrives and resumed without trusting what is already on disk.
type Want struct {
	Size   int64
	SHA256 string // hex
}

// ErrMismatch is what Download's error wraps when the server sent other
// content than asked for (wrong size or sha256): the source is bad, not
// the network, and retrying will not help.
var ErrMismatch = errors.New("content does not match")

// errPermanent marks failures a retry cannot fix (a 404, content that
// does not match).
type errPermanent struct{ error }

func (e errPermanent) Unwrap() error { return e.error }

// Download fetches url into dst. It writes dst+".part", resuming it with
// an HTTP Range request after a dropped connection, a stall (nothing
// received for f.Stall) or a server error, with backoff between attempts,
// and renames it to dst (synced) only once size and sha256 match want.
// A partial file left by an earlier call is resumed, its bytes hashed
// again first. Content that does not match removes the partial file:
// the next attempt starts clean. A file already at dst is checked and
// kept if it matches.
func (f *Fetcher) Download(ctx context.Context, url, dst string, want Want) error {
	if err := CheckSum(want.SHA256); err != nil {
		return err
	}
	if want.Size < 0 {
		return fmt.Errorf("%s: negative size %d", url, want.Size)
	}
	if ok, err := matches(dst, want); err != nil || ok {
		return err
	}
	part := dst + ".part"
	err := f.retry(ctx, f.retries(), func() error { return f.attempt(ctx, url, part, want) },
		func() string { return "resuming from " + filepath.Base(part) })
	if err != nil {
		return err
	}
	if err := os.Rename(part, dst); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(dst))
}

// matches says whether path already holds what want describes.
func matches(path string, want Want) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, want.Size+1))
	if err != nil {
		return false, err
	}
	return n == want.Size && hex.EncodeToString(h.Sum(nil)) == want.SHA256, nil
}

// attempt makes one request, appending to part from where it ends.
func (f *Fetcher) attempt(ctx context.Context, url, part string, want Want) error {
	out, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return errPermanent{err}
	}
	defer out.Close()
	h := sha256.New()
	have, err := io.Copy(h, io.LimitReader(out, want.Size+1))
	if err != nil {
		return errPermanent{fmt.Errorf("%s: %w", part, err)}
	}
	if have > want.Size {
		have = 0 // longer than the file can be: not ours to resume
		h.Reset()
	}
	if have < want.Size {
		if err := f.fetchFrom(ctx, url, out, h, have, want.Size); err != nil {
			return err
		}
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != want.SHA256 {
		out.Close()
		os.Remove(part)
		return errPermanent{fmt.Errorf("GET %s: sha256 %s, want %s: the server sent other content (partial file removed): %w", url, sum, want.SHA256, ErrMismatch)}
	}
	if err := out.Sync(); err != nil {
		return errPermanent{err}
	}
	return out.Close()
}

// fetchFrom requests bytes from offset have on and appends them to out
// (and h), refusing more than size in all.
func (f *Fetcher) fetchFrom(ctx context.Context, url string, out *os.File, h hash.Hash, have, size int64) error {
	ctx, poke, stop := f.watch(ctx)
	defer stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return errPermanent{err}
	}
	if have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
	}
	resp, err := f.client().Do(req)
	if err != nil {
		return cause(ctx, err)
	}
	defer resp.Body.Close()
	switch {
	case have > 0 && resp.StatusCode == http.StatusOK:
		// The server ignores Range: start over.
		f.logf("GET %s: the server does not resume (no Range support); starting over", url)
		h.Reset()
		have = 0
	case have > 0 && resp.StatusCode == http.StatusPartialContent:
	case have == 0 && resp.StatusCode == http.StatusOK:
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	default:
		return errPermanent{fmt.Errorf("GET %s: %s", url, resp.Status)}
	}
	if resp.ContentLength >= 0 && resp.ContentLength != size-have {
		return errPermanent{fmt.Errorf("GET %s: the server sends %d bytes from offset %d, want %d (a %d-byte file): not the file the manifest names: %w", url, resp.ContentLength, have, size-have, size, ErrMismatch)}
	}
	if err := out.Truncate(have); err != nil {
		return errPermanent{err}
	}
	if _, err := out.Seek(have, io.SeekStart); err != nil {
		return errPermanent{err}
	}
	buf := make([]byte, 256<<10)
	for have < size {
		n, err := resp.Body.Read(buf[:min(int64(len(buf)), size-have+1)])
		if n > 0 {
			poke()
			if have+int64(n) > size {
				out.Truncate(0)
				return errPermanent{fmt.Errorf("GET %s: more than the expected %d bytes: %w", url, size, ErrMismatch)}
			}
			if _, werr := out.Write(buf[:n]); werr != nil {
				return errPermanent{fmt.Errorf("%s: %w", out.Name(), werr)}
			}
			h.Write(buf[:n])
			have += int64(n)
		}
		if err == io.EOF {
			if have < size {
				return fmt.Errorf("GET %s: connection ended at %d of %d bytes", url, have, size)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("GET %s: at %d of %d bytes: %w", url, have, size, cause(ctx, err))
		}
	}
	// All bytes are here; anything after them means another file.
	if n, _ := resp.Body.Read(buf[:1]); n > 0 {
		out.Truncate(0)
		return errPermanent{fmt.Errorf("GET %s: more than the expected %d bytes: %w", url, size, ErrMismatch)}
	}
	return nil
}

// cause prefers the reason the request was cancelled (a stall) to the
// transport's "context canceled".
func cause(ctx context.Context, err error) error {
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
		return c
	}
	return err
}
