package apt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/build/progress"
	"github.com/mkimage/mkimage/internal/cachedir"
	"github.com/mkimage/mkimage/internal/filehash"
)

// FetchEntries makes sure each package's file is in debs/ with the
// sha256 its index entry gives. Files already there are used (and
// marked used); the others are downloaded by one apt-get download, which
// fetches them in parallel, into a temporary directory, and each is
// moved into debs/ once its sha256 matches. Progress goes to Log.
func (c *Cache) FetchEntries(ctx context.Context, entries []Entry) ([]Fetched, error) {
	if err := c.mkdirs(); err != nil {
		return nil, err
	}
	unlock, err := c.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	out := make([]Fetched, len(entries))
	var missing []int
	queued := map[string]bool{}
	for i, e := range entries {
		out[i] = Fetched{Entry: e, Path: filepath.Join(c.Dir, "debs", fileName(e))}
		if queued[out[i].Path] || c.cached(out[i]) {
			continue
		}
		queued[out[i].Path] = true
		missing = append(missing, i)
	}
	if len(missing) == 0 {
		c.logCached(out)
		return out, nil
	}
	if err := c.download(ctx, out, missing); err != nil {
		return nil, err
	}
	return out, nil
}

// fileName is the name apt-get download gives a package's file (":" of
// an epoch escaped).
func fileName(e Entry) string {
	return fmt.Sprintf("%s_%s_%s.deb", e.Name, strings.ReplaceAll(e.Version, ":", "%3a"), e.Arch)
}

// cached reports whether f's file is in debs/ with the right sha256,
// and marks it used.
func (c *Cache) cached(f Fetched) bool {
	if sum, err := filehash.SHA256(f.Path); err != nil || sum != f.SHA256 {
		return false
	}
	cachedir.Touch(f.Path)
	return true
}

func (c *Cache) logCached(fs []Fetched) {
	if len(fs) == 1 {
		c.logf("cached %s %s (%s)", fs[0].Name, fs[0].Version, mb(fs[0].Size))
		return
	}
	c.logf("%d packages cached (%s)", len(fs), mb(totalSize(fs)))
}

func totalSize(fs []Fetched) int64 {
	var n int64
	for _, f := range fs {
		n += f.Size
	}
	return n
}

// download runs one apt-get download for out[missing] and moves each
// file that arrived and matches its sha256 into debs/ (kept even when
// others failed, so the next build fetches only the rest).
func (c *Cache) download(ctx context.Context, out []Fetched, missing []int) error {
	tmp, err := os.MkdirTemp(filepath.Join(c.Dir, "debs"), ".download-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	args := []string{"-q", "download"}
	for _, i := range missing {
		// The exact version: apt's candidate may come from a suite the
		// caller did not resolve from.
		args = append(args, want{out[i].Name, out[i].Version}.arg(c.Arch))
	}
	start := time.Now()
	m := progress.Start(c.Log, progress.Options{
		Label: "apt: fetching", Unit: "packages",
		Total: progress.Counts{Items: len(out), Bytes: totalSize(out)},
		Poll:  pollDownloads(tmp, out, missing),
	})
	_, runErr := c.run(ctx, tmp, "apt-get", args...)
	m.Stop()
	var errs []error
	var got []Fetched
	for _, i := range missing {
		if err := keep(tmp, out[i]); err != nil {
			errs = append(errs, err)
			continue
		}
		got = append(got, out[i])
	}
	if runErr != nil || len(errs) > 0 {
		return c.downloadError(len(missing), runErr, errs)
	}
	c.logFetched(got, len(out)-len(got), time.Since(start))
	return nil
}

// pollDownloads counts what is done: the cached packages, and the
// downloads by the bytes apt has written to their files in tmp.
func pollDownloads(tmp string, out []Fetched, missing []int) func() progress.Counts {
	want := map[string]int64{}
	var cached progress.Counts
	cached.Items, cached.Bytes = len(out), totalSize(out)
	for _, i := range missing {
		want[filepath.Base(out[i].Path)] = out[i].Size
		cached.Items--
		cached.Bytes -= out[i].Size
	}
	return func() progress.Counts {
		c := cached
		ents, _ := os.ReadDir(tmp)
		for _, e := range ents {
			size, ok := want[e.Name()]
			info, err := e.Info()
			if !ok || err != nil {
				continue
			}
			c.Bytes += min(info.Size(), size)
			if info.Size() >= size {
				c.Items++
			}
		}
		return c
	}
}

// keep moves a downloaded file into debs/ once its sha256 matches.
func keep(tmp string, f Fetched) error {
	got := filepath.Join(tmp, filepath.Base(f.Path))
	sum, err := filehash.SHA256(got)
	if err != nil {
		return fmt.Errorf("package %s %s: apt-get download did not fetch it", f.Name, f.Version)
	}
	if sum != f.SHA256 {
		return fmt.Errorf("package %s %s: downloaded file has sha256 %s, the index says %s", f.Name, f.Version, sum, f.SHA256)
	}
	if err := os.Rename(got, f.Path); err != nil {
		return err
	}
	cachedir.Touch(f.Path) // apt gave it the archive's time
	return nil
}

// downloadError names the packages not fetched and what to do.
func (c *Cache) downloadError(asked int, runErr error, errs []error) error {
	const show = 5
	msgs := make([]string, 0, show)
	for i, e := range errs {
		if i == show {
			msgs = append(msgs, fmt.Sprintf("and %d more", len(errs)-show))
			break
		}
		msgs = append(msgs, e.Error())
	}
	err := fmt.Errorf("%d of %d packages not fetched: %s", len(errs), asked, strings.Join(msgs, "; "))
	if len(errs) == 0 {
		err = errors.New("apt-get download failed")
	}
	if runErr != nil {
		err = fmt.Errorf("%w: %v", err, runErr)
	}
	return fmt.Errorf("%w (the packages fetched are kept; check the network and the mirror, and if the mirror no longer has these versions, remove %s to refresh the package lists, then build again)", err, filepath.Join(c.Dir, "lists"))
}

func (c *Cache) logFetched(got []Fetched, cached int, took time.Duration) {
	n := totalSize(got)
	rate := ""
	if s := took.Seconds(); s > 0 {
		rate = fmt.Sprintf(", %.1f MB/s", float64(n)/1e6/s)
	}
	took = took.Round(100 * time.Millisecond)
	if len(got) == 1 && cached == 0 {
		c.logf("fetched %s %s (%s) in %s%s", got[0].Name, got[0].Version, mb(n), took, rate)
		return
	}
	also := ""
	if cached > 0 {
		also = fmt.Sprintf("; %d were cached", cached)
	}
	c.logf("fetched %d packages (%s) in %s%s%s", len(got), mb(n), took, rate, also)
}
