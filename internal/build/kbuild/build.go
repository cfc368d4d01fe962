package kbuild

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mkimage/mkimage/internal/cachedir"
)

// recipe changes whenever Build's output for the same inputs would change,
// so old cache entries are not reused.
const recipe = "kbuild-1"

// BuildOptions says what to build.
type BuildOptions struct {
	Config    []byte   // a resolved .config (see Resolve)
	DTBs      []string // "vendor/file.dtb" the output must contain
	Jobs      int      // make -j; 0 = number of CPUs
	Toolchain Toolchain
	Progress  io.Writer     // phase and periodic lines; nil = discard
	Tick      time.Duration // period of "still building" lines; 0 = 30s
}

// Result describes a finished build.
type Result struct {
	Dir     string // the output directory
	Release string // kernel release, the lib/modules/<release> name
	Cached  bool   // taken from the cache, nothing built
	Key     string // cache key
	Log     string // make's log (empty when cached)
}

// Output layout, as the image builder's --kernel DIR reads it:
//
//	Image                      the arm64 kernel
//	dtbs/<vendor>/<file>.dtb   device trees (dtbs_install)
//	lib/modules/<release>/     modules_install, with modules.builtin
//	config                     the .config it was built with
//	System.map
//	release                    the kernel release string

// Key returns the cache key of a build: source, config, toolchain and the
// requested device trees.
func (s *Source) Key(opts BuildOptions) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n%s\n%s\n", recipe, s.ID, opts.Toolchain.Version, strings.Join(opts.Toolchain.MakeVars, " "), strings.Join(opts.DTBs, " "))
	h.Write(opts.Config)
	return hex.EncodeToString(h.Sum(nil))
}

// Build builds Image, modules and device trees from opts.Config and
// writes them to out atomically (a temp directory renamed into place;
// an existing out is replaced). A cacheable source's result is kept in
// the cache, so an unchanged rebuild only copies.
func (s *Source) Build(ctx context.Context, out string, opts BuildOptions) (*Result, error) {
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if opts.Jobs <= 0 {
		opts.Jobs = runtimeCPUs()
	}
	if opts.Tick <= 0 {
		opts.Tick = 30 * time.Second
	}
	if len(opts.Config) == 0 {
		return nil, fmt.Errorf("kernel build: empty config")
	}
	key := s.Key(opts)
	res := &Result{Key: key}
	cached := filepath.Join(s.cache, "out", key)
	if s.Cacheable() {
		if _, err := os.Stat(filepath.Join(cached, "Image")); err == nil {
			cachedir.Touch(cached)
			fmt.Fprintf(opts.Progress, "kernel: %s cached (%s)\n", s.Version, key[:12])
			res.Cached = true
			return res, s.publish(cached, out, res)
		}
	}

	bdir := filepath.Join(s.cache, "build", shortHash(s.ID+"\n"+opts.Toolchain.Version+"\n"+strings.Join(opts.Toolchain.MakeVars, " ")))
	if err := os.MkdirAll(filepath.Dir(bdir), 0o755); err != nil {
		return nil, err
	}
	unlock, err := lock(bdir + ".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Made under the lock: a cache prune holding it may have just removed
	// the directory.
	if err := os.MkdirAll(bdir, 0o755); err != nil {
		return nil, err
	}
	cachedir.Touch(bdir)

	logPath := filepath.Join(bdir, "build.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	res.Log = logPath

	if err := os.WriteFile(filepath.Join(bdir, ".config"), opts.Config, 0o644); err != nil {
		return nil, err
	}
	modules := bytes.Contains(opts.Config, []byte("\nCONFIG_MODULES=y\n"))
	targets := []string{"Image"}
	if modules {
		targets = append(targets, "modules")
	}
	if len(opts.DTBs) > 0 {
		targets = append(targets, "dtbs")
	}
	if err := os.MkdirAll(filepath.Dir(filepath.Clean(out)), 0o755); err != nil {
		return nil, fmt.Errorf("output %s: %w", out, err)
	}
	stage, err := os.MkdirTemp(filepath.Dir(filepath.Clean(out)), ".kernel-")
	if err != nil {
		return nil, fmt.Errorf("output %s: %w", out, err)
	}
	keep := false
	defer func() {
		if !keep {
			os.RemoveAll(stage)
		}
	}()

	start := time.Now()
	steps := []struct {
		what string
		args []string
	}{
		{"configuring (olddefconfig)", []string{"olddefconfig"}},
		{fmt.Sprintf("building %s with -j%d", strings.Join(targets, ", "), opts.Jobs), append([]string{"-j" + strconv.Itoa(opts.Jobs)}, targets...)},
	}
	if modules {
		steps = append(steps, struct {
			what string
			args []string
		}{"installing modules", []string{"modules_install", "INSTALL_MOD_PATH=" + stage, "INSTALL_MOD_STRIP=1"}})
	}
	if len(opts.DTBs) > 0 {
		steps = append(steps, struct {
			what string
			args []string
		}{"installing device trees", []string{"dtbs_install", "INSTALL_DTBS_PATH=" + filepath.Join(stage, "dtbs")}})
	}
	for _, st := range steps {
		fmt.Fprintf(opts.Progress, "kernel: %s %s (log: %s)\n", s.Version, st.what, logPath)
		fmt.Fprintf(logf, "### make %s\n", strings.Join(st.args, " "))
		cmd := s.make(ctx, bdir, opts.Toolchain, st.args...)
		cmd.Env = append(os.Environ(), s.reproducibleEnv()...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := runTicking(cmd, opts.Tick, func(d time.Duration) {
			fmt.Fprintf(opts.Progress, "kernel: %s %s: %s elapsed; %s\n", s.Version, st.what, d.Round(time.Second), lastLogLine(logPath))
		}); err != nil {
			return nil, fmt.Errorf("kernel %s: %s failed: %v; last lines of %s:\n%s", s.Version, st.what, err, logPath, tail(logPath, 20))
		}
	}

	rel, err := os.ReadFile(filepath.Join(bdir, "include", "config", "kernel.release"))
	if err != nil {
		return nil, fmt.Errorf("kernel %s: no kernel.release after build: %w", s.Version, err)
	}
	res.Release = strings.TrimSpace(string(rel))
	for _, f := range []struct{ from, to string }{
		{"arch/arm64/boot/Image", "Image"}, {".config", "config"}, {"System.map", "System.map"},
	} {
		if err := copyFile(filepath.Join(bdir, f.from), filepath.Join(stage, f.to)); err != nil {
			return nil, fmt.Errorf("kernel %s: %w", s.Version, err)
		}
	}
	if err := os.WriteFile(filepath.Join(stage, "release"), []byte(res.Release+"\n"), 0o644); err != nil {
		return nil, err
	}
	mdir := filepath.Join(stage, "lib", "modules", res.Release)
	// The build and source links point into the cache; the image must not
	// carry them.
	os.Remove(filepath.Join(mdir, "build"))
	os.Remove(filepath.Join(mdir, "source"))
	if !modules {
		if err := os.MkdirAll(mdir, 0o755); err != nil {
			return nil, err
		}
		if err := copyFile(filepath.Join(bdir, "modules.builtin"), filepath.Join(mdir, "modules.builtin")); err != nil && !os.IsNotExist(err) {
			return nil, err
		}
	}
	for _, d := range opts.DTBs {
		if _, err := os.Stat(filepath.Join(stage, "dtbs", d)); err != nil {
			return nil, fmt.Errorf("kernel %s: device tree %s was not built; does the config enable its platform (ARCH_...)?", s.Version, d)
		}
	}
	fmt.Fprintf(opts.Progress, "kernel: %s built in %s\n", res.Release, time.Since(start).Round(time.Second))

	if s.Cacheable() {
		// Keep a copy in the cache, then publish from it.
		if err := os.MkdirAll(filepath.Dir(cached), 0o755); err != nil {
			return nil, err
		}
		ctmp, err := os.MkdirTemp(filepath.Dir(cached), ".tmp-")
		if err != nil {
			return nil, err
		}
		if err := copyTree(stage, ctmp); err != nil {
			os.RemoveAll(ctmp)
			return nil, err
		}
		if err := os.Rename(ctmp, cached); err != nil {
			os.RemoveAll(ctmp) // another build stored the same key
		}
	}
	keep = true
	return res, replaceDir(stage, out, res)
}

// publish copies a cached result to out atomically.
func (s *Source) publish(cached, out string, res *Result) error {
	rel, err := os.ReadFile(filepath.Join(cached, "release"))
	if err != nil {
		return fmt.Errorf("kernel cache %s: %w", cached, err)
	}
	res.Release = strings.TrimSpace(string(rel))
	if err := os.MkdirAll(filepath.Dir(filepath.Clean(out)), 0o755); err != nil {
		return err
	}
	stage, err := os.MkdirTemp(filepath.Dir(filepath.Clean(out)), ".kernel-")
	if err != nil {
		return fmt.Errorf("output %s: %w", out, err)
	}
	if err := copyTree(cached, stage); err != nil {
		os.RemoveAll(stage)
		return err
	}
	return replaceDir(stage, out, res)
}

// replaceDir renames stage to out, replacing an existing out.
func replaceDir(stage, out string, res *Result) error {
	os.Chmod(stage, 0o755) // MkdirTemp made it 0700
	old := ""
	if _, err := os.Lstat(out); err == nil {
		old = stage + ".old"
		if err := os.Rename(out, old); err != nil {
			os.RemoveAll(stage)
			return fmt.Errorf("output %s: %w", out, err)
		}
	}
	if err := os.Rename(stage, out); err != nil {
		os.RemoveAll(stage)
		if old != "" {
			os.Rename(old, out)
		}
		return fmt.Errorf("output %s: %w", out, err)
	}
	if old != "" {
		os.RemoveAll(old)
	}
	res.Dir = out
	return nil
}

// make returns a make command for the source with its output in obj.
func (s *Source) make(ctx context.Context, obj string, tc Toolchain, args ...string) *exec.Cmd {
	all := append([]string{"-C", s.Dir, "O=" + obj, "ARCH=" + Arch}, tc.MakeVars...)
	cmd := exec.CommandContext(ctx, "make", append(all, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	return cmd
}

// reproducibleEnv pins what the kernel would take from the build host.
func (s *Source) reproducibleEnv() []string {
	ts := "Thu Jan  1 00:00:00 UTC 1970"
	if st, err := os.Stat(filepath.Join(s.Dir, "Makefile")); err == nil {
		ts = st.ModTime().UTC().Format(time.UnixDate)
	}
	if e := os.Getenv("SOURCE_DATE_EPOCH"); e != "" {
		if n, err := strconv.ParseInt(e, 10, 64); err == nil {
			ts = time.Unix(n, 0).UTC().Format(time.UnixDate)
		}
	}
	return []string{"KBUILD_BUILD_TIMESTAMP=" + ts, "KBUILD_BUILD_USER=mkimage", "KBUILD_BUILD_HOST=mkimage", "KBUILD_BUILD_VERSION=1"}
}

func runTicking(cmd *exec.Cmd, every time.Duration, tick func(time.Duration)) error {
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-t.C:
			tick(time.Since(start))
		}
	}
}

func lastLogLine(path string) string {
	l := strings.TrimSpace(tail(path, 1))
	if l == "" {
		return "no output yet"
	}
	return "last: " + l
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, _ := f.Stat()
	off := max(st.Size()-16<<10, 0)
	buf := make([]byte, st.Size()-off)
	f.ReadAt(buf, off)
	return lastLines(string(buf), n)
}

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}

func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}
