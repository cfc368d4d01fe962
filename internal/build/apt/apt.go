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
	"github.com/mkimage/mkimage/internal/filehash"
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
	// Log receives one line per step ("apt: fetched ..."); nil for none.
	Log io.Writer
}

// Fetched is a verified package file in the cache.
type Fetched struct {
	Name    string
	Version string
	Arch    string
	Path    string
	SHA256  string
	Size    int64
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
	maxAge := c.MaxAge
	if maxAge == 0 {
		maxAge = 24 * time.Hour
	}
	age, have := c.listsAge()
	if have && age < maxAge {
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
	if age, have = c.listsAge(); have && age < maxAge {
		return nil
	}
	c.logf("updating %s package lists in %s", c.Arch, filepath.Join(c.Dir, "lists"))
	_, err = c.run(ctx, c.Dir, "apt-get", "-q", "update")
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

// lock takes an exclusive lock on the cache directory, waiting for
// another process that holds it.
func (c *Cache) lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(c.Dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("apt cache lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("apt cache lock %s: %w", f.Name(), err)
	}
	return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

// Show returns the candidate version's index stanza for a package.
func (c *Cache) Show(ctx context.Context, name string) (deb.Control, error) {
	out, err := c.run(ctx, c.Dir, "apt-cache", "show", "--no-all-versions", name+":"+c.Arch)
	if err != nil {
		if bytes.Contains(out, []byte("Package:")) {
			err = nil // warnings only
		} else {
			return deb.Control{}, fmt.Errorf("package %q not found in the %s lists: %w", name, c.Arch, err)
		}
	}
	ctl, err := deb.ParseControl(out)
	if err != nil {
		return ctl, fmt.Errorf("apt-cache show %s: %w", name, err)
	}
	if ctl.Package != name {
		return ctl, fmt.Errorf("apt-cache show %s gave package %q", name, ctl.Package)
	}
	return ctl, nil
}

// Fetch downloads packages (the candidate versions for Arch) into
// debs/ unless a file with the index's sha256 is already there, and
// returns them verified. A download lands in a temporary directory and
// is moved into debs/ only once its sha256 matches.
func (c *Cache) Fetch(ctx context.Context, names ...string) ([]Fetched, error) {
	if err := c.Update(ctx); err != nil {
		return nil, err
	}
	var out []Fetched
	for _, name := range names {
		f, err := c.fetch(ctx, name)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

func (c *Cache) fetch(ctx context.Context, name string) (Fetched, error) {
	if n, arch, ok := strings.Cut(name, ":"); ok {
		if arch != c.Arch {
			return Fetched{}, fmt.Errorf("package %q: this cache fetches %s packages only", name, c.Arch)
		}
		name = n
	}
	ctl, err := c.Show(ctx, name)
	if err != nil {
		return Fetched{}, err
	}
	f := Fetched{Name: name, Version: ctl.Version, Arch: ctl.Architecture, SHA256: strings.ToLower(ctl.Get("SHA256"))}
	if f.SHA256 == "" || f.Version == "" {
		return f, fmt.Errorf("package %s: index entry has no SHA256 or Version", name)
	}
	if f.Size, err = strconv.ParseInt(ctl.Get("Size"), 10, 64); err != nil {
		return f, fmt.Errorf("package %s: index entry has a bad Size %q", name, ctl.Get("Size"))
	}
	// The name apt-get download gives the file (":" in epochs escaped).
	file := fmt.Sprintf("%s_%s_%s.deb", name, strings.ReplaceAll(f.Version, ":", "%3a"), f.Arch)
	f.Path = filepath.Join(c.Dir, "debs", file)
	if sum, err := filehash.SHA256(f.Path); err == nil && sum == f.SHA256 {
		cachedir.Touch(f.Path)
		c.logf("cached %s %s (%s)", name, f.Version, mb(f.Size))
		return f, nil
	}
	tmp, err := os.MkdirTemp(filepath.Join(c.Dir, "debs"), ".download-")
	if err != nil {
		return f, err
	}
	defer os.RemoveAll(tmp)
	if _, err := c.run(ctx, tmp, "apt-get", "-q", "download", name+":"+f.Arch); err != nil {
		return f, fmt.Errorf("package %s: %w", name, err)
	}
	got := filepath.Join(tmp, file)
	sum, err := filehash.SHA256(got)
	if err != nil {
		ents, _ := os.ReadDir(tmp)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return f, fmt.Errorf("package %s: apt-get download did not write %s (found %v)", name, file, names)
	}
	if sum != f.SHA256 {
		return f, fmt.Errorf("package %s %s: downloaded file has sha256 %s, the index says %s", name, f.Version, sum, f.SHA256)
	}
	if err := os.Rename(got, f.Path); err != nil {
		return f, err
	}
	cachedir.Touch(f.Path) // apt gave it the archive's time
	c.logf("fetched %s %s (%s)", name, f.Version, mb(f.Size))
	return f, nil
}

// KernelPackage fetches the kernel the linux-image-<arch> metapackage
// currently depends on (for example linux-image-6.1.0-56-arm64).
func (c *Cache) KernelPackage(ctx context.Context) (Fetched, error) {
	if err := c.Update(ctx); err != nil {
		return Fetched{}, err
	}
	meta := "linux-image-" + c.Arch
	ctl, err := c.Show(ctx, meta)
	if err != nil {
		return Fetched{}, err
	}
	deps, err := deb.ParseDepends(ctl.Depends)
	if err != nil {
		return Fetched{}, fmt.Errorf("%s %s: Depends: %w", meta, ctl.Version, err)
	}
	for _, alts := range deps {
		for _, d := range alts {
			if strings.HasPrefix(d.Name, "linux-image-") {
				return c.fetch(ctx, d.Name)
			}
		}
	}
	return Fetched{}, fmt.Errorf("%s %s: no linux-image-* in Depends %q", meta, ctl.Version, ctl.Depends)
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
