package initramfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/u-root/gobusybox/src/pkg/golang"
	"github.com/u-root/mkuimage/uimage"
	"github.com/u-root/uio/llog"

	"github.com/mkimage/mkimage/internal/build/cpio"
	"github.com/mkimage/mkimage/internal/build/progress"
	"github.com/mkimage/mkimage/internal/cachedir"
	"github.com/mkimage/mkimage/internal/fstree"
)

const modulePath = "github.com/mkimage/mkimage"

// buildTags: goshsmall gives gosh a plain line reader. Its default
// editor queries the terminal (cursor position reports) and waits for
// answers a serial console may never send, and it drags in a TUI library.
var buildTags = []string{"goshsmall"}

// sourceDir returns the mkimage module root: dir if given, else the first
// directory upwards from the working directory whose go.mod declares the
// module. The busybox is compiled from source, so the tool needs its own
// source tree (and Go) to build an initramfs that is not cached yet.
func sourceDir(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv("MKIMAGE_SOURCE")
	}
	if dir != "" {
		return dir, checkModule(dir)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if checkModule(d) == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	if DefaultSourceDir != "" && checkModule(DefaultSourceDir) == nil {
		return DefaultSourceDir, nil
	}
	return "", fmt.Errorf("building the initramfs needs the mkimage source tree (a go.mod for %s): run from the checkout, set MKIMAGE_SOURCE=DIR, or give a prebuilt --initramfs", modulePath)
}

// DefaultSourceDir is the checkout the binary was built from; `make` sets
// it at link time so an installed mkimage still finds nodeinit's source.
var DefaultSourceDir string

func checkModule(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return err
	}
	if !bytes.Contains(b, []byte("module "+modulePath+"\n")) {
		return fmt.Errorf("%s/go.mod is not module %s", dir, modulePath)
	}
	return nil
}

// busyboxKey hashes what the busybox is made of: the Go version, go.mod,
// go.sum, the command list, and the sources of every package of this
// module that nodeinit imports (for linux/arm64).
func busyboxKey(ctx context.Context, src string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "busybox v1\ncommands %s\ntags %s\n", strings.Join(RescueCommands, " "), strings.Join(buildTags, ","))
	cmd := exec.CommandContext(ctx, "go", "list", "-deps", "-f", "{{if .Module}}{{if eq .Module.Path \""+modulePath+"\"}}{{.Dir}}{{end}}{{end}}", "./cmd/nodeinit")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list nodeinit's packages in %s: %v\n%s", src, err, stderr.Bytes())
	}
	ver, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOVERSION: %w", err)
	}
	fmt.Fprintf(h, "go %s", ver)
	files := []string{filepath.Join(src, "go.mod"), filepath.Join(src, "go.sum")}
	for _, dir := range strings.Fields(string(out)) {
		m, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		files = append(files, m...)
	}
	sort.Strings(files)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		rel, _ := filepath.Rel(src, f)
		fmt.Fprintf(h, "file %s %x\n", filepath.ToSlash(rel), sha256.Sum256(b))
	}
	return hex.EncodeToString(h.Sum(nil))[:32], nil
}

// busybox returns the busybox tree, built with u-root's uimage or read
// from the cache.
func busybox(ctx context.Context, cacheDir, src, key string, logw io.Writer) (*fstree.Tree, error) {
	p := filepath.Join(cacheDir, "busybox-"+key+".cpio")
	if _, err := os.Stat(p); err != nil {
		if err := buildBusybox(ctx, p, src, logw); err != nil {
			return nil, err
		}
	} else {
		cachedir.Touch(p)
		fmt.Fprintf(logw, "initramfs: cached busybox %s\n", p)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := cpio.Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return t, nil
}

func buildBusybox(ctx context.Context, out, src string, logw io.Writer) error {
	tmp, err := os.MkdirTemp(filepath.Dir(out), "build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	pkgs := []string{NodeinitPkg}
	for _, c := range RescueCommands {
		pkgs = append(pkgs, "github.com/u-root/u-root/cmds/core/"+c)
	}
	fmt.Fprintf(logw, "initramfs: building u-root busybox for linux/arm64 (%d commands; minutes: gobusybox compiles every package each time)\n", len(pkgs))
	l := llog.New(slog.LevelWarn, llog.WritePrintf(logw))
	cpioPath := filepath.Join(tmp, "bb.cpio")
	start := time.Now()
	w, err := watchCompiles(ctx, tmp, src, pkgs)
	if err != nil {
		return err
	}
	m := progress.Start(logw, progress.Options{
		Label: "initramfs: busybox", Unit: "packages compiled",
		Total: progress.Counts{Items: w.total}, Watch: w.report,
	})
	// uimage runs `go` in the module root so our go.mod pins u-root.
	err = uimage.Create(l,
		uimage.WithEnv(golang.WithGOOS("linux"), golang.WithGOARCH("arm64"), golang.DisableCGO(), golang.WithWorkingDir(src), golang.WithBuildTag(buildTags...)),
		uimage.WithTempDir(tmp),
		uimage.WithBusyboxCommands(pkgs...),
		uimage.WithBusyboxBuildOpts(&golang.BuildOpts{ExtraArgs: []string{"-toolexec", w.toolexec}}),
		uimage.WithInit("nodeinit"),
		uimage.WithShell("gosh"),
		uimage.WithSkipLDD(),
		uimage.WithCPIOOutput(cpioPath),
	)
	done := m.Stop()
	if err != nil {
		return fmt.Errorf("building the u-root busybox: %w", err)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	fmt.Fprintf(logw, "initramfs: busybox built in %v (%d packages compiled)\n", time.Since(start).Round(time.Second), done.Items)
	return os.Rename(cpioPath, out)
}

// compileWatch counts the packages `go build` compiles for the busybox:
// go build prints nothing while it works and uimage keeps its output
// until the end, so a -toolexec wrapper appends a line per compile to a
// log that the meter reads.
type compileWatch struct {
	toolexec string // the -toolexec value
	log      string
	total    int // packages to compile: nodeinit's and the commands' dependencies
}

// toolexecScript runs the tool and logs each compile and link by import
// path (TOOLEXEC_IMPORTPATH, set by go build) as it starts and once it
// is done. One short echo is one append, whole even when compiles run in
// parallel. Go asks each tool its version (-V=full) through the wrapper
// too: not logged.
const toolexecScript = `tool=${1##*/}
case $tool in
compile|link) [ "$2" = -V=full ] && exec "$@" ;;
*) exec "$@" ;;
esac
echo "$tool $TOOLEXEC_IMPORTPATH" >>"$MKIMAGE_COMPILE_LOG"
"$@"
rc=$?
echo "done $tool $TOOLEXEC_IMPORTPATH" >>"$MKIMAGE_COMPILE_LOG"
exit $rc
`

// watchCompiles writes the wrapper into dir and counts the packages the
// build of pkgs compiles: their dependencies for linux/arm64 but unsafe,
// and the two packages gobusybox adds (its main and bbmain): 304 for
// nodeinit and 22 commands. gobusybox builds with -a, so all of them
// are compiled every time.
func watchCompiles(ctx context.Context, dir, src string, pkgs []string) (*compileWatch, error) {
	toolexec, log, err := writeToolexec(dir)
	if err != nil {
		return nil, err
	}
	w := &compileWatch{toolexec: toolexec, log: log}
	cmd := exec.CommandContext(ctx, "go", append([]string{"list", "-deps", "-tags", strings.Join(buildTags, ",")}, pkgs...)...)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list the busybox's packages in %s: %w\n%s", src, err, stderr.Bytes())
	}
	for _, p := range strings.Fields(string(out)) {
		if p != "unsafe" { // the compiler's own: nothing to compile
			w.total++
		}
	}
	w.total += 2
	return w, nil
}

// writeToolexec writes the wrapper into dir and returns the -toolexec
// value and the log it appends to.
func writeToolexec(dir string) (toolexec, log string, err error) {
	// Absolute: go runs the wrapper in each package's directory.
	if dir, err = filepath.Abs(dir); err != nil {
		return "", "", err
	}
	if strings.ContainsRune(dir, '\'') {
		return "", "", fmt.Errorf("busybox build directory %q: a quote in the path", dir)
	}
	log = filepath.Join(dir, "compiles.log")
	script := filepath.Join(dir, "toolexec.sh")
	// The log's path goes in the script: go build passes the wrapper the
	// environment uimage gives it, not one of ours.
	body := "MKIMAGE_COMPILE_LOG='" + log + "'\n" + toolexecScript
	if err := os.WriteFile(script, []byte(body), 0o644); err != nil {
		return "", "", err
	}
	// Run through sh (the cache may be on a noexec mount), named by its
	// path: go runs the wrapper with PATH set to GOROOT/bin only.
	sh, err := exec.LookPath("sh")
	if err != nil {
		return "", "", fmt.Errorf("the busybox build's progress wrapper: %w", err)
	}
	if sh, err = filepath.Abs(sh); err != nil {
		return "", "", err
	}
	return sh + " '" + script + "'", log, nil
}

// report reads the log for the meter.
func (w *compileWatch) report() progress.Report {
	b, _ := os.ReadFile(w.log)
	n, note := countCompiles(b)
	return progress.Report{Done: progress.Counts{Items: n}, Note: note}
}

// countCompiles counts the compiles a toolexec log says are done and
// says what the build is doing. A line still being written (no newline
// yet) is left for the next read.
func countCompiles(log []byte) (n int, note string) {
	note = "preparing the busybox source"
	for len(log) > 0 {
		i := bytes.IndexByte(log, '\n')
		if i < 0 {
			break
		}
		f := strings.Fields(string(log[:i]))
		log = log[i+1:]
		switch {
		case len(f) == 2 && f[0] == "compile":
			note = "compiling " + f[1]
		case len(f) == 3 && f[0] == "done" && f[1] == "compile":
			n++
		case len(f) >= 1 && f[0] == "link":
			note = "linking"
		}
	}
	return n, note
}
