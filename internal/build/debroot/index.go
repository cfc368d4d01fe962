// Package debroot builds a Debian root filesystem tree without running
// anything from the packages: it resolves a package set from an apt
// Packages index, unpacks the .debs into a tree with their exact owners
// and modes, and writes dpkg's database so the packages stand "unpacked,
// not configured", with a first-boot hook that configures them on the
// node, as debootstrap's second stage would (README, "The Debian root").
package debroot

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/mkimage/mkimage/internal/compress"

	"github.com/mkimage/mkimage/internal/build/deb"
)

// Pkg is one package stanza of a Packages index.
type Pkg struct {
	Name       string
	Version    string
	Arch       string
	MultiArch  string // "same", "foreign", "allowed" or ""
	Essential  bool
	Priority   string
	Depends    [][]deb.Dep
	PreDepends [][]deb.Dep
	Provides   []deb.Dep // Op is "=" or ""
	Filename   string
	SHA256     string
	Size       string
}

// Index holds the candidate (highest) version of each package and who
// provides each virtual name.
type Index struct {
	pkgs      map[string]*Pkg
	providers map[string][]*Pkg
	// Sources names the files the index was read from, for messages.
	Sources []string
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{pkgs: map[string]*Pkg{}, providers: map[string][]*Pkg{}}
}

// Get returns the candidate version of a package.
func (ix *Index) Get(name string) (*Pkg, bool) {
	p, ok := ix.pkgs[name]
	return p, ok
}

// Len is the number of packages in the index.
func (ix *Index) Len() int { return len(ix.pkgs) }

// Names returns the packages matching sel, sorted.
func (ix *Index) Names(sel func(*Pkg) bool) []string {
	var out []string
	for n, p := range ix.pkgs {
		if sel(p) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// Add reads every stanza of a Packages file; for a package listed more
// than once (several suites or pockets) the highest version wins, as
// apt's candidate does without pinning.
func (ix *Index) Add(name string, r io.Reader) error {
	err := deb.ReadStanzas(r, func(line int, ctl deb.Control) error {
		p, err := fromControl(ctl)
		if err != nil {
			return fmt.Errorf("stanza at line %d: %w", line, err)
		}
		ix.put(p)
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	ix.Sources = append(ix.Sources, name)
	return nil
}

func (ix *Index) put(p *Pkg) {
	if old, ok := ix.pkgs[p.Name]; ok {
		if CompareVersions(p.Version, old.Version) <= 0 {
			return
		}
		ix.dropProvides(old)
	}
	ix.pkgs[p.Name] = p
	for _, pr := range p.Provides {
		ix.providers[pr.Name] = append(ix.providers[pr.Name], p)
	}
}

func (ix *Index) dropProvides(old *Pkg) {
	for _, pr := range old.Provides {
		l := ix.providers[pr.Name]
		for i, q := range l {
			if q == old {
				ix.providers[pr.Name] = append(l[:i:i], l[i+1:]...)
				break
			}
		}
	}
}

func fromControl(c deb.Control) (*Pkg, error) {
	p := &Pkg{
		Name:      c.Package,
		Version:   c.Version,
		Arch:      c.Architecture,
		MultiArch: c.Get("Multi-Arch"),
		Essential: c.Get("Essential") == "yes",
		Priority:  c.Get("Priority"),
		Filename:  c.Get("Filename"),
		SHA256:    strings.ToLower(c.Get("SHA256")),
		Size:      c.Get("Size"),
	}
	if p.Version == "" {
		return nil, fmt.Errorf("package %s: no Version", p.Name)
	}
	var err error
	if p.Depends, err = deb.ParseDepends(c.Depends); err != nil {
		return nil, fmt.Errorf("package %s: Depends: %w", p.Name, err)
	}
	if p.PreDepends, err = deb.ParseDepends(c.Get("Pre-Depends")); err != nil {
		return nil, fmt.Errorf("package %s: Pre-Depends: %w", p.Name, err)
	}
	prov, err := deb.ParseDepends(c.Get("Provides"))
	if err != nil {
		return nil, fmt.Errorf("package %s: Provides: %w", p.Name, err)
	}
	for _, alts := range prov {
		p.Provides = append(p.Provides, alts...)
	}
	return p, nil
}

// ListFiles returns the Packages files for arch in an apt lists
// directory that belong to suite or its pockets (SUITE-updates,
// SUITE-security), for example
// deb.debian.org_debian_dists_bookworm_main_binary-arm64_Packages.lz4.
func ListFiles(dir, suite, arch string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("apt lists %s: %w", dir, err)
	}
	var out []string
	suites := map[string]bool{}
	for _, e := range ents {
		n := e.Name()
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, ".lz4"), ".gz"), ".xz"), ".zst"), ".diff_Index")
		if !strings.HasSuffix(base, "_binary-"+arch+"_Packages") {
			continue
		}
		_, rest, ok := strings.Cut(n, "_dists_")
		if !ok {
			continue
		}
		s, _, _ := strings.Cut(rest, "_")
		suites[s] = true
		if s == suite || s == suite+"-updates" || s == suite+"-security" {
			out = append(out, filepath.Join(dir, n))
		}
	}
	if len(out) == 0 {
		var have []string
		for s := range suites {
			have = append(have, s)
		}
		sort.Strings(have)
		return nil, fmt.Errorf("suite %q: no %s package lists in %s (lists there are for %v); the suite must be in the host's apt sources", suite, arch, dir, have)
	}
	sort.Strings(out)
	return out, nil
}

// LoadIndex reads Packages files, plain or compressed (lz4, gzip, xz,
// zstd, told apart by the file name).
func LoadIndex(files ...string) (*Index, error) {
	ix := NewIndex()
	for _, f := range files {
		if err := ix.addFile(f); err != nil {
			return nil, err
		}
	}
	return ix, nil
}

func (ix *Index) addFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := compress.NewReader(f, compress.KindOf(path))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer r.Close()
	return ix.Add(path, r)
}
