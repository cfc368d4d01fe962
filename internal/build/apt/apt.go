// Package apt fetches Debian packages for another architecture (arm64)
// into mkimage's own cache with the ordinary apt client, leaving the
// host's dpkg architectures, apt state and status file alone: every
// apt-get/apt-cache run points its lists, caches and status at private
// paths and only reads the host's sources and keys.
package apt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/cachedir"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/build/deb"
)

// Cache is a private apt state for one architecture.
type Cache struct {
	// Dir holds lists/, cache/ and debs/.
	Dir string
	// Arch is the Debian architecture to fetch ("arm64").
	Arch string
	// MaxAge is how old the package lists may get before Fetch runs
	// apt-get update (a day when zero).
	MaxAge time.Duration
	// Log receives progress (a bar on a terminal, else a line every few
	// seconds) and one line per step ("apt: fetched ..."); nil for none.
	Log io.Writer
}

// Entry is a package's index entry: which file to download and what it
// must hash to.
type Entry struct {
	Name    string
	Version string
	Arch    string // the package's Architecture ("arm64" or "all")
	SHA256  string
	Size    int64
}

// Fetched is a verified package file in the cache.
type Fetched struct {
	Entry
	Path string
}

// New returns the default arm64 cache logging to log.
func New(log io.Writer) (*Cache, error) {
	return &Cache{Dir: cachedir.Dir("apt"), Arch: "arm64", Log: log}, nil
}

func (c *Cache) logf(format string, args ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, "apt: "+format+"\n", args...)
	}
}

// options point apt at the private state. Dir::State::status=/dev/null
// makes apt see an empty system, so the host's installed packages play no
// part in what is chosen.
func (c *Cache) options() []string {
	return []string{
		"-o", "APT::Architecture=" + c.Arch,
		"-o", "APT::Architectures=" + c.Arch,
		"-o", "Dir::State::Lists=" + filepath.Join(c.Dir, "lists"),
		"-o", "Dir::Cache=" + filepath.Join(c.Dir, "cache"),
		"-o", "Dir::State::status=/dev/null",
	}
}

func (c *Cache) run(ctx context.Context, dir, tool string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, tool, append(c.options(), args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(stdout.String())
		}
		return stdout.Bytes(), fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, lastLines(msg, 5))
	}
	return stdout.Bytes(), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}

func (c *Cache) mkdirs() error {
	for _, d := range []string{"lists/partial", "cache/archives/partial", "debs"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// listsAge returns the age of the newest Release file in lists/, or
// ok=false when there is none.
func (c *Cache) listsAge() (age time.Duration, ok bool) {
	ms, _ := filepath.Glob(filepath.Join(c.Dir, "lists", "*Release"))
	var newest time.Time
	for _, m := range ms {
		if st, err := os.Stat(m); err == nil && st.ModTime().After(newest) {
			newest = st.ModTime()
		}
	}
	if newest.IsZero() {
		return 0, false
	}
	return time.Since(newest), true
}

// Update runs apt-get update when the lists are missing or older than
// MaxAge. With old lists at hand a failed update only warns, so builds
// from a warm cache work offline.
func (c *Cache) Update(ctx context.Context) error {
	if err := c.mkdirs(); err != nil {
		return err
	}
	// Every build reads the lists; an update changes their files' times.
	cachedir.Touch(filepath.Join(c.Dir, "lists"))
	cachedir.Touch(filepath.Join(c.Dir, "cache"))
	if c.fresh() {
		return nil
	}
	// Builds and tests running at once share the cache: one updates the
	// lists, the others wait and then find them fresh (apt-get itself
	// fails at once on a held lists lock).
	unlock, err := c.lock()
	if err != nil {
		return err
	}
	defer unlock()
	return c.update(ctx)
}

func (c *Cache) maxAge() time.Duration {
	if c.MaxAge == 0 {
		return 24 * time.Hour
	}
	return c.MaxAge
}

func (c *Cache) fresh() bool {
	age, have := c.listsAge()
	return have && age < c.maxAge()
}

// update is Update's work under the lock.
func (c *Cache) update(ctx context.Context) error {
	age, have := c.listsAge()
	if have && age < c.maxAge() {
		return nil
	}
	c.logf("updating %s package lists in %s", c.Arch, filepath.Join(c.Dir, "lists"))
	_, err := c.run(ctx, c.Dir, "apt-get", "-q", "update")
	if err == nil {
		if _, have := c.listsAge(); !have {
			err = errors.New("apt-get update wrote no Release files (no sources configured?)")
		}
	}
	if err != nil {
		if have && ctx.Err() == nil {
			c.logf("update failed, using lists from %s ago: %v", age.Round(time.Minute), err)
			return nil
		}
		return fmt.Errorf("apt update of %s: %w", c.Dir, err)
	}
	return nil
}

// lock takes an exclusive lock on the cache directory (the lists, and
// the downloads into debs/, so builds running at once fetch a package
// once), waiting for another process that holds it.
func (c *Cache) lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(c.Dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("apt cache lock: %w", err)
	}
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		c.logf("waiting for another build using %s", c.Dir)
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("apt cache lock %s: %w", f.Name(), err)
		}
	}
	return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

// Show returns the index stanzas of packages, each "NAME", "NAME:ARCH"
// or "NAME=VERSION" (default: the candidate version for Arch), in the
// order asked, with one apt-cache run. Names the lists do not have are
// an error naming them.
func (c *Cache) Show(ctx context.Context, names ...string) ([]deb.Control, error) {
	wants := make([]want, len(names))
	args := []string{"show", "--no-all-versions"}
	for i, n := range names {
		w, err := c.parseWant(n)
		if err != nil {
			return nil, err
		}
		wants[i] = w
		args = append(args, w.arg(c.Arch))
	}
	// apt-cache leaves out the names it does not know, and fails only
	// when it knows none: a stanza per name is what counts.
	out, runErr := c.run(ctx, c.Dir, "apt-cache", args...)
	found := map[want]deb.Control{}
	err := deb.ReadStanzas(bytes.NewReader(out), func(_ int, ctl deb.Control) error {
		found[want{ctl.Package, ctl.Version}] = ctl
		found[want{ctl.Package, ""}] = ctl
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("apt-cache show: %w", err)
	}
	ctls := make([]deb.Control, len(wants))
	var missing []string
	for i, w := range wants {
		if ctls[i] = found[w]; ctls[i].Package == "" {
			missing = append(missing, fmt.Sprintf("%q", names[i]))
		}
	}
	if len(missing) > 0 {
		err := fmt.Errorf("package %s not found in the %s lists (check the name with apt-cache search, or the suite)", strings.Join(missing, ", "), c.Arch)
		if runErr != nil { // "No packages found", or why apt-cache failed
			err = fmt.Errorf("%w: %v", err, runErr)
		}
		return nil, err
	}
	return ctls, nil
}

// want is a package Show looks up; version "" is the candidate.
type want struct{ name, version string }

// parseWant reads "NAME", "NAME:ARCH" or "NAME=VERSION".
func (c *Cache) parseWant(n string) (want, error) {
	name, version, _ := strings.Cut(n, "=")
	if base, arch, ok := strings.Cut(name, ":"); ok {
		if arch != c.Arch {
			return want{}, fmt.Errorf("package %q: this cache fetches %s packages only", n, c.Arch)
		}
		name = base
	}
	return want{name, version}, nil
}

// arg spells w for apt-cache and apt-get: NAME:ARCH[=VERSION].
func (w want) arg(arch string) string {
	if w.version == "" {
		return w.name + ":" + arch
	}
	return w.name + ":" + arch + "=" + w.version
}

// entryOf reads the fields a download is checked by from an index
// stanza.
func entryOf(ctl deb.Control) (Entry, error) {
	e := Entry{Name: ctl.Package, Version: ctl.Version, Arch: ctl.Architecture, SHA256: strings.ToLower(ctl.Get("SHA256"))}
	if e.SHA256 == "" || e.Version == "" || e.Arch == "" {
		return e, fmt.Errorf("package %s: index entry has no SHA256, Version or Architecture", e.Name)
	}
	var err error
	if e.Size, err = strconv.ParseInt(ctl.Get("Size"), 10, 64); err != nil {
		return e, fmt.Errorf("package %s: index entry has a bad Size %q", e.Name, ctl.Get("Size"))
	}
	return e, nil
}

// Fetch downloads packages (each "NAME", "NAME:ARCH" or "NAME=VERSION";
// default the candidate version for Arch) into debs/ unless a file with
// the index's sha256 is already there, and returns them verified. It
// starts one apt-cache and at most one apt-get download, whatever the
// number of packages.
func (c *Cache) Fetch(ctx context.Context, names ...string) ([]Fetched, error) {
	if err := c.Update(ctx); err != nil {
		return nil, err
	}
	ctls, err := c.Show(ctx, names...)
	if err != nil {
		return nil, err
	}
	entries := make([]Entry, len(ctls))
	for i, ctl := range ctls {
		if entries[i], err = entryOf(ctl); err != nil {
			return nil, err
		}
	}
	return c.FetchEntries(ctx, entries)
}

// KernelPackage fetches the kernel the linux-image-<arch> metapackage
// currently depends on (for example linux-image-6.1.0-56-arm64).
func (c *Cache) KernelPackage(ctx context.Context) (Fetched, error) {
	if err := c.Update(ctx); err != nil {
		return Fetched{}, err
	}
	meta := "linux-image-" + c.Arch
	ctls, err := c.Show(ctx, meta)
	if err != nil {
		return Fetched{}, err
	}
	ctl := ctls[0]
	deps, err := deb.ParseDepends(ctl.Depends)
	if err != nil {
		return Fetched{}, fmt.Errorf("%s %s: Depends: %w", meta, ctl.Version, err)
	}
	for _, alts := range deps {
		for _, d := range alts {
			if strings.HasPrefix(d.Name, "linux-image-") {
				fs, err := c.Fetch(ctx, d.Name)
				if err != nil {
					return Fetched{}, err
				}
				return fs[0], nil
			}
		}
	}
	return Fetched{}, fmt.Errorf("%s %s: no linux-image-* in Depends %q", meta, ctl.Version, ctl.Depends)
}
func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
