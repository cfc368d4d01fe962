// Package kbuild runs a kernel source tree's own build system, always out
// of tree (O=DIR), for arm64: resolving a config fragment into a .config
// and building Image, device trees and modules. Source tarballs are
// unpacked once into a cache keyed by their sha256, and builds are cached
// by source, config and toolchain.
package kbuild

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/mkimage/mkimage/internal/cachedir"
	"github.com/mkimage/mkimage/internal/filehash"
)

// Arch is the only architecture the boards need.
const Arch = "arm64"

// Source is a kernel source tree that is never written to.
type Source struct {
	Dir string
	// ID identifies the contents: "sha256:<hex>" of a tarball, or
	// "dir:<path>" for a directory (whose contents may change, so builds
	// from it are not cached as results; make's own checks apply).
	ID      string
	Version string // from the top Makefile, e.g. "6.1.158"
	cache   string
}

// Cacheable reports whether the source's contents are pinned by its ID.
func (s *Source) Cacheable() bool { return strings.HasPrefix(s.ID, "sha256:") }

// OpenSource opens a kernel source directory or a .tar.xz/.tar.gz/.tar
// tarball, unpacking a tarball into cache/src/<sha256> once. progress
// gets a line per slow step (nil: none).
func OpenSource(path, cache string, progress io.Writer) (*Source, error) {
	if progress == nil {
		progress = io.Discard
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("kernel source: %w", err)
	}
	s := &Source{cache: cache}
	if st.IsDir() {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, err
		}
		s.Dir, s.ID = abs, "dir:"+abs
	} else {
		sum, err := filehash.SHA256(path)
		if err != nil {
			return nil, fmt.Errorf("kernel source %s: %w", path, err)
		}
		s.ID = "sha256:" + sum
		s.Dir, err = unpack(path, filepath.Join(cache, "src", sum), progress)
		if err != nil {
			return nil, err
		}
		cachedir.Touch(filepath.Join(cache, "src", sum))
	}
	s.Version, err = makefileVersion(s.Dir)
	if err != nil {
		return nil, fmt.Errorf("kernel source %s: %w", path, err)
	}
	return s, nil
}

// unpack extracts tarball into dest (once; concurrent callers race
// harmlessly on the final rename) and returns the tree's top directory.
func unpack(tarball, dest string, progress io.Writer) (string, error) {
	if top, err := findTop(dest); err == nil {
		return top, nil
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dest), ".unpack-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(progress, "kernel: unpacking %s into %s (once)\n", tarball, dest)
	// tar detects xz, gzip and bzip2 itself and is several times faster
	// than unpacking xz in Go.
	out, err := exec.Command("tar", "-xf", tarball, "-C", tmp, "--no-same-owner").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("kernel source %s: tar: %v: %s (want a .tar.xz, .tar.gz or .tar of a kernel tree)", tarball, err, lastLines(string(out), 5))
	}
	if _, err := findTop(tmp); err != nil {
		return "", fmt.Errorf("kernel source %s: %w", tarball, err)
	}
	if err := os.Rename(tmp, dest); err != nil {
		if top, err2 := findTop(dest); err2 == nil {
			return top, nil // another process won
		}
		return "", err
	}
	return findTop(dest)
}

// findTop returns dir or its single subdirectory, whichever holds a
// kernel tree (Makefile and Kconfig).
func findTop(dir string) (string, error) {
	isTree := func(d string) bool {
		_, e1 := os.Stat(filepath.Join(d, "Makefile"))
		_, e2 := os.Stat(filepath.Join(d, "arch", Arch, "Kconfig"))
		return e1 == nil && e2 == nil
	}
	if isTree(dir) {
		return dir, nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		if e.IsDir() && isTree(filepath.Join(dir, e.Name())) {
			return filepath.Join(dir, e.Name()), nil
		}
	}
	return "", fmt.Errorf("no kernel tree with arch/%s/Kconfig in it", Arch)
}

var mkVarRE = regexp.MustCompile(`^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)\s*=\s*(.*)$`)

func makefileVersion(dir string) (string, error) {
	f, err := os.Open(filepath.Join(dir, "Makefile"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	v := map[string]string{}
	sc := bufio.NewScanner(f)
	for i := 0; sc.Scan() && i < 20; i++ {
		if m := mkVarRE.FindStringSubmatch(sc.Text()); m != nil {
			v[m[1]] = strings.TrimSpace(m[2])
		}
	}
	if v["VERSION"] == "" || v["PATCHLEVEL"] == "" {
		return "", fmt.Errorf("top Makefile has no VERSION/PATCHLEVEL; is it a kernel tree?")
	}
	ver := v["VERSION"] + "." + v["PATCHLEVEL"]
	if v["SUBLEVEL"] != "" {
		ver += "." + v["SUBLEVEL"]
	}
	return ver + v["EXTRAVERSION"], nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
