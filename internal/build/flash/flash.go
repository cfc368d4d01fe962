// Package flash writes one image to many SD cards (or files) at once: the
// image is read and decompressed once, its mapped blocks go to every
// target in parallel, and each target is read back and checked against the
// bmap's checksums.
package flash

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/bmap"
	"github.com/mkimage/mkimage/internal/compress"
)

// Options tune a run.
type Options struct {
	Force    bool      // write despite safety findings (see Check)
	NoVerify bool      // skip reading the targets back
	Progress io.Writer // where progress goes; nil: none
	Bars     bool      // progress bars (Progress is a terminal) instead of lines
}

// Result is what happened to one target.
type Result struct {
	Target     string
	Written    int64 // bytes written: image data plus zeroed areas
	WriteTime  time.Duration
	Verified   bool
	VerifyTime time.Duration
	Err        error // nil: written (and verified unless NoVerify)
}

const (
	chunkSize = 1 << 20
	// poolSize bounds the memory of a run whatever the number of targets:
	// chunks are shared read-only by all writers, and the reader waits for
	// a free one, so the slowest target sets the pace.
	poolSize = 32
)

// writeHook, when set by a test, runs before every data write and can
// make it fail.
var writeHook func(path string, off int64) error

// chunk is a piece of the image that every live writer writes.
type chunk struct {
	off  int64
	data []byte
	refs atomic.Int32
}

// Flash writes the image at imagePath (raw, .zst or .xz), described by m,
// to every target. It returns an error only when nothing was written;
// otherwise each target's fate is in its Result.
func Flash(ctx context.Context, imagePath string, m *bmap.Map, targets []Target, opt Options) ([]Result, error) {
	if len(targets) == 0 {
		return nil, errors.New("no targets")
	}
	if err := Check(targets, m.ImageSize, opt.Force); err != nil {
		return nil, err
	}
	if err := notTheImage(imagePath, targets); err != nil {
		return nil, err
	}
	src, err := openImage(imagePath, m)
	if err != nil {
		return nil, err
	}
	defer src.Close()

	ws := make([]*writer, len(targets))
	for i, t := range targets {
		ws[i] = &writer{t: t, m: m, ch: make(chan *chunk, poolSize)}
	}
	rep := startProgress(opt, ws, m)
	pool := make(chan *chunk, poolSize)
	for range poolSize {
		pool <- &chunk{data: make([]byte, chunkSize)}
	}
	release := func(c *chunk) {
		if c.refs.Add(-1) == 0 {
			pool <- c
		}
	}
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(func() { w.run(release, !opt.NoVerify) })
	}
	srcErr := readImage(ctx, src, m, ws, pool)
	for _, w := range ws {
		w.srcErr = srcErr // before close: the writer sees it after its loop
		close(w.ch)
	}
	wg.Wait()
	rep.stop()
	res := make([]Result, len(ws))
	for i, w := range ws {
		res[i] = w.res
	}
	return res, nil
}

// notTheImage refuses a target that is the image file itself, which
// truncating would destroy.
func notTheImage(imagePath string, targets []Target) error {
	src, err := os.Stat(imagePath)
	if err != nil {
		return err
	}
	for _, t := range targets {
		if fi, err := os.Stat(t.Path); err == nil && os.SameFile(src, fi) {
			return fmt.Errorf("target %s is the image itself: name another target", t.Path)
		}
	}
	return nil
}

// openImage opens the image and checks its size against the map where
// that is cheap (a raw image).
func openImage(path string, m *bmap.Map) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	k := compress.KindOf(path)
	if k == compress.None {
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		if fi.Size() != m.ImageSize {
			f.Close()
			return nil, fmt.Errorf("%s has %d bytes but its bmap says %d: the bmap belongs to another image", path, fi.Size(), m.ImageSize)
		}
		return f, nil
	}
	r, err := compress.NewReader(f, k)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{r, closers{r, f}}, nil
}

type closers []io.Closer

func (cs closers) Close() error {
	var errs []error
	for _, c := range cs {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// readImage reads the mapped ranges once, in order, checks each against
// the bmap and hands every chunk to all writers.
func readImage(ctx context.Context, src io.Reader, m *bmap.Map, ws []*writer, pool chan *chunk) error {
	pos := int64(0)
	seeker, _ := src.(io.Seeker)
	for _, r := range m.Ranges {
		off, end := m.Bytes(r)
		if seeker != nil {
			if _, err := seeker.Seek(off, io.SeekStart); err != nil {
				return fmt.Errorf("reading the image: %w", err)
			}
		} else if _, err := io.CopyN(io.Discard, src, off-pos); err != nil {
			return fmt.Errorf("reading the image at byte %d: %w", pos, err)
		}
		h := m.NewHash()
		for p := off; p < end; {
			var c *chunk
			select {
			case c = <-pool:
			case <-ctx.Done():
				return fmt.Errorf("interrupted: %w", ctx.Err())
			}
			n := min(int64(chunkSize), end-p)
			c.off, c.data = p, c.data[:n]
			if _, err := io.ReadFull(src, c.data); err != nil {
				return fmt.Errorf("reading the image at byte %d: %w (is it truncated?)", p, err)
			}
			h.Write(c.data)
			c.refs.Store(int32(len(ws)))
			for _, w := range ws {
				w.ch <- c
			}
			p += n
		}
		if sum := hex.EncodeToString(h.Sum(nil)); sum != r.Sum {
			return fmt.Errorf("image blocks %d-%d do not match the bmap's checksum: the image or its bmap is damaged, or they do not belong together", r.First, r.Last)
		}
		pos = end
	}
	return nil
}

// writer writes one target.
type writer struct {
	t      Target
	m      *bmap.Map
	ch     chan *chunk
	srcErr error

	phase   atomic.Value // string
	done    atomic.Int64 // bytes written, then bytes verified
	mbr     []byte       // the image's first sector, for the wipe zones
	failed  atomic.Bool
	res     Result
	started time.Time
}

func (w *writer) fail(err error) {
	if w.res.Err == nil {
		w.res.Err = err
		w.failed.Store(true)
	}
}

func (w *writer) run(release func(*chunk), verify bool) {
	w.res.Target = w.t.Path
	w.phase.Store("writing")
	w.started = time.Now()
	f, err := w.open()
	if err != nil {
		w.fail(err)
	}
	for c := range w.ch {
		if w.res.Err == nil {
			w.write(f, c)
		}
		release(c)
	}
	if w.srcErr != nil {
		w.fail(w.srcErr)
	}
	if w.res.Err == nil && w.t.Block {
		w.wipe(f)
	}
	if w.res.Err == nil {
		if err := f.Sync(); err != nil {
			w.fail(fmt.Errorf("syncing: %w", err))
		}
	}
	if f != nil {
		if err := f.Close(); err != nil {
			w.fail(fmt.Errorf("closing: %w", err))
		}
	}
	w.res.WriteTime = time.Since(w.started)
	if w.res.Err == nil && verify {
		w.phase.Store("verifying")
		w.done.Store(0)
		start := time.Now()
		if err := w.verify(); err != nil {
			w.fail(err)
		} else {
			w.res.Verified = true
		}
		w.res.VerifyTime = time.Since(start)
	}
	w.phase.Store("done")
}

// open prepares the target: a file is emptied and sized to the image (its
// holes read as zeros); on a device the unmapped space is discarded.
func (w *writer) open() (*os.File, error) {
	if !w.t.Block {
		f, err := os.OpenFile(w.t.Path, os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			return nil, err
		}
		err = f.Truncate(0)
		if err == nil {
			err = f.Truncate(w.m.ImageSize)
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("sizing the file: %w", err)
		}
		return f, nil
	}
	// O_EXCL on a block device fails while anything has it open
	// exclusively (a mount, md, dm): the kernel's own last check.
	f, err := os.OpenFile(w.t.Path, os.O_WRONLY|os.O_EXCL, 0)
	if err != nil {
		return nil, err
	}
	for _, g := range gaps(w.m) {
		r := [2]uint64{uint64(g.Off), uint64(g.Len)}
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKDISCARD, uintptr(unsafe.Pointer(&r))); e != 0 {
			break // many USB card readers do not pass discard on; it is only a hint
		}
	}
	return f, nil
}

func (w *writer) write(f *os.File, c *chunk) {
	if writeHook != nil {
		if err := writeHook(w.t.Path, c.off); err != nil {
			w.fail(fmt.Errorf("writing at byte %d: %w", c.off, err))
			return
		}
	}
	if _, err := f.WriteAt(c.data, c.off); err != nil {
		w.fail(fmt.Errorf("writing at byte %d: %w", c.off, err))
		return
	}
	if c.off == 0 && len(c.data) >= 512 {
		w.mbr = append([]byte(nil), c.data[:512]...)
	}
	w.res.Written += int64(len(c.data))
	w.done.Store(w.res.Written)
}

// wipe zeroes the unmapped parts of the areas where stale signatures
// could confuse (see wipeZones).
func (w *writer) wipe(f *os.File) {
	zero := make([]byte, chunkSize)
	for _, z := range unmapped(wipeZones(w.mbr, w.t.Size), w.m) {
		for p := z.Off; p < z.Off+z.Len; {
			n := min(int64(len(zero)), z.Off+z.Len-p)
			if _, err := f.WriteAt(zero[:n], p); err != nil {
				w.fail(fmt.Errorf("zeroing at byte %d: %w", p, err))
				return
			}
			p += n
			w.res.Written += n
		}
	}
}

// verify reads every mapped range back from the target, past the page
// cache, and compares its checksum with the bmap's.
func (w *writer) verify() error {
	f, err := os.Open(w.t.Path)
	if err != nil {
		return fmt.Errorf("opening to verify: %w", err)
	}
	defer f.Close()
	// The data is synced, so dropping the cached pages makes the reads
	// below come from the card, not from memory.
	if w.t.Block {
		unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0)
	}
	unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	buf := make([]byte, chunkSize)
	var done int64
	for _, r := range w.m.Ranges {
		off, end := w.m.Bytes(r)
		h := w.m.NewHash()
		n, err := io.CopyBuffer(h, io.NewSectionReader(f, off, end-off), buf)
		if err != nil {
			return fmt.Errorf("reading back blocks %d-%d: %w", r.First, r.Last, err)
		}
		if n != end-off {
			return fmt.Errorf("reading back blocks %d-%d: target ends at byte %d", r.First, r.Last, off+n)
		}
		if hex.EncodeToString(h.Sum(nil)) != r.Sum {
			return fmt.Errorf("blocks %d-%d read back differ from the image (checksum mismatch): bad card?", r.First, r.Last)
		}
		done += n
		w.done.Store(done)
	}
	return nil
}
