// Package kmod resolves kernel module dependencies the way modprobe
// would, from the modules themselves: Debian's kernel packages ship no
// modules.dep, so each .ko's .modinfo ELF section (depends=, softdep=,
// alias=) is the source. Built-in modules (modules.builtin) need no
// loading and are skipped.
package kmod

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/mkimage/mkimage/internal/compress"

	"github.com/mkimage/mkimage/internal/modalias"
)

// Normalize returns the kernel's name for a module: '-' and '_' are the
// same to the kernel, which uses '_'.
func Normalize(name string) string { return strings.ReplaceAll(name, "-", "_") }

// Module is one loadable module file.
type Module struct {
	Name string // normalised, e.g. "virtio_blk"
	Path string // slash path below the modules directory, e.g. "kernel/fs/btrfs/btrfs.ko"
}

// Info is what a module's .modinfo says about its loading.
type Info struct {
	Depends  []string // hard dependencies, normalised
	SoftPre  []string // softdep pre: names or aliases, loaded before
	SoftPost []string // softdep post: names or aliases, loaded after
	Aliases  []string
}

// ParseModinfo reads the NUL-separated key=value strings of a .modinfo
// section.
func ParseModinfo(b []byte) Info {
	var in Info
	for _, kv := range bytes.Split(b, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch k {
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d = strings.TrimSpace(d); d != "" {
					in.Depends = append(in.Depends, Normalize(d))
				}
			}
		case "softdep":
			// "pre: a b post: c"
			var list *[]string
			for _, w := range strings.Fields(v) {
				switch w {
				case "pre:":
					list = &in.SoftPre
				case "post:":
					list = &in.SoftPost
				default:
					// Soft dependencies may be aliases, whose
					// dashes matter; Resolve normalises module names.
					if list != nil {
						*list = append(*list, w)
					}
				}
			}
		case "alias":
			in.Aliases = append(in.Aliases, v)
		}
	}
	return in
}

// Set is the modules of one kernel: a modules directory
// (lib/modules/<version>) as an fs.FS.
type Set struct {
	fsys    fs.FS
	byName  map[string]Module
	builtin map[string]bool
	// builtinAlias maps aliases of built-in modules (from
	// modules.builtin.modinfo) to their module name.
	builtinAlias map[string]string

	mu      sync.Mutex
	info    map[string]Info
	aliases map[string][]string // alias → module names, built on first need
}

// Open indexes the modules under fsys, which is rooted at a kernel's
// modules directory (the one holding kernel/ and modules.builtin).
func Open(fsys fs.FS) (*Set, error) {
	s := &Set{fsys: fsys, byName: map[string]Module{}, builtin: map[string]bool{}, builtinAlias: map[string]string{}, info: map[string]Info{}}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		name, ok := moduleName(p)
		if !ok {
			return nil
		}
		if prev, dup := s.byName[name]; dup {
			// depmod prefers updates/ and extra/ over kernel/; keep the
			// choice stable and visible instead.
			if prev.Path < p {
				return nil
			}
		}
		s.byName[name] = Module{Name: name, Path: p}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading modules directory: %w", err)
	}
	b, err := fs.ReadFile(fsys, "modules.builtin")
	// A kernel with everything built in has no .ko files, but it still
	// has modules.builtin; with neither, this is no modules directory.
	if len(s.byName) == 0 && err != nil {
		return nil, fmt.Errorf("modules directory holds no .ko files and no modules.builtin")
	}
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if name, ok := moduleName(strings.TrimSpace(line)); ok {
				s.builtin[name] = true
			}
		}
	}
	if b, err := fs.ReadFile(fsys, "modules.builtin.modinfo"); err == nil {
		// "module.key=value\0" records.
		for _, rec := range bytes.Split(b, []byte{0}) {
			mk, v, ok := strings.Cut(string(rec), "=")
			if !ok {
				continue
			}
			m, k, ok := strings.Cut(mk, ".")
			if ok && k == "alias" {
				s.builtinAlias[v] = Normalize(m)
				s.builtin[Normalize(m)] = true
			}
		}
	}
	return s, nil
}

// OpenDir is Open on a host directory.
func OpenDir(dir string) (*Set, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("modules directory: %w", err)
	}
	s, err := Open(os.DirFS(dir))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return s, nil
}

// moduleName returns the normalised module name of a .ko file path.
func moduleName(p string) (string, bool) {
	base := path.Base(p)
	for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
		if strings.HasSuffix(base, ext) {
			return Normalize(strings.TrimSuffix(base, ext)), true
		}
	}
	return "", false
}

// Module returns the module file of a name, or ok false.
func (s *Set) Module(name string) (Module, bool) {
	m, ok := s.byName[Normalize(name)]
	return m, ok
}

// Builtin reports whether the kernel has the module built in.
func (s *Set) Builtin(name string) bool { return s.builtin[Normalize(name)] }

// ReadModule returns the module's ELF bytes, decompressed.
func (s *Set) ReadModule(m Module) ([]byte, error) {
	b, err := fs.ReadFile(s.fsys, m.Path)
	if err != nil {
		return nil, err
	}
	if strings.HasSuffix(m.Path, ".ko") {
		return b, nil
	}
	k := compress.KindOf(m.Path)
	if k != compress.XZ && k != compress.Zstd && k != compress.Gzip {
		return nil, fmt.Errorf("%s: unsupported module compression", m.Path)
	}
	r, err := compress.NewReader(bytes.NewReader(b), k)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.Path, err)
	}
	defer r.Close()
	out, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.Path, err)
	}
	return out, nil
}

// Info returns what the module's .modinfo says.
func (s *Set) Info(m Module) (Info, error) {
	s.mu.Lock()
	in, ok := s.info[m.Name]
	s.mu.Unlock()
	if ok {
		return in, nil
	}
	data, err := s.modinfo(m)
	if err != nil {
		return Info{}, err
	}
	in = ParseModinfo(data)
	s.mu.Lock()
	s.info[m.Name] = in
	s.mu.Unlock()
	return in, nil
}

// modinfo returns a module's .modinfo section. Plain .ko files are read
// in place (only the ELF headers and the section), so indexing every
// alias of a kernel stays quick.
func (s *Set) modinfo(m Module) ([]byte, error) {
	var ra io.ReaderAt
	if strings.HasSuffix(m.Path, ".ko") {
		f, err := s.fsys.Open(m.Path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if r, ok := f.(io.ReaderAt); ok {
			ra = r
		}
	}
	if ra == nil {
		b, err := s.ReadModule(m)
		if err != nil {
			return nil, err
		}
		ra = bytes.NewReader(b)
	}
	f, err := elf.NewFile(ra)
	if err != nil {
		return nil, fmt.Errorf("%s: not an ELF module: %w", m.Path, err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("%s: no .modinfo section", m.Path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("%s: .modinfo: %w", m.Path, err)
	}
	return data, nil
}

// Match returns the module files whose aliases match a device's modalias
// (e.g. "of:NmmcT(null)Camlogic,meson-gx-mmc"), sorted. Built-in modules
// are not returned: see Builtin and the kernel Image.
func (s *Set) Match(dev string) ([]string, error) { return s.lookupAlias(dev) }

// MatchBuiltin returns the built-in modules whose aliases (from
// modules.builtin.modinfo, which newer kernels fill with their device
// tables) match a device's modalias, sorted.
func (s *Set) MatchBuiltin(dev string) []string {
	var out []string
	for a, m := range s.builtinAlias {
		ok := a == dev || strings.ContainsAny(a, "*?[\\") && modalias.Match(a, dev)
		if ok && !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	sort.Strings(out)
	return out
}

// lookupAlias returns the modules providing alias, sorted; it reads every
// module's .modinfo the first time (softdeps name aliases such as
// "crc32c", which Debian's 6.1 kernel provides as crc32c_generic).
func (s *Set) lookupAlias(alias string) ([]string, error) {
	s.mu.Lock()
	built := s.aliases != nil
	s.mu.Unlock()
	if !built {
		idx := map[string][]string{}
		names := make([]string, 0, len(s.byName))
		for n := range s.byName {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			in, err := s.Info(s.byName[n])
			if err != nil {
				return nil, err
			}
			for _, a := range in.Aliases {
				idx[a] = append(idx[a], n)
			}
		}
		s.mu.Lock()
		s.aliases = idx
		s.mu.Unlock()
	}
	var out []string
	for a, mods := range s.aliases {
		if a == alias || strings.ContainsAny(a, "*?[\\") && modalias.Match(a, alias) {
			out = append(out, mods...)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Plan is a resolved load list.
type Plan struct {
	// Load lists the modules to load, dependencies first, each once.
	Load []Module
	// Builtin lists wanted names (or their dependencies) the kernel has
	// built in.
	Builtin []string
	// MissingSoft lists soft dependencies found nowhere; modprobe skips
	// them too.
	MissingSoft []string
}

// Resolve orders the named modules and everything they need. A wanted
// name or a hard dependency that is neither a module file, an alias of
// one, nor built in is an error naming it.
func (s *Set) Resolve(names ...string) (*Plan, error) {
	r := resolver{s: s, state: map[string]int{}, plan: &Plan{}, seenBuiltin: map[string]bool{}}
	for _, n := range names {
		if err := r.want(n, "wanted", false); err != nil {
			return nil, err
		}
	}
	return r.plan, nil
}

type resolver struct {
	s           *Set
	state       map[string]int // 1 visiting, 2 done
	plan        *Plan
	seenBuiltin map[string]bool
}

// want adds name (a module name or alias) and its dependencies. why says
// who asked, for error messages.
func (r *resolver) want(name, why string, soft bool) error {
	mods, err := r.find(name)
	if err != nil {
		return err
	}
	if mods == nil {
		if soft {
			r.plan.MissingSoft = appendOnce(r.plan.MissingSoft, name)
			return nil
		}
		return fmt.Errorf("module %s (%s) not found: no such .ko, alias or built-in module in this kernel", name, why)
	}
	for _, m := range mods {
		if err := r.visit(m); err != nil {
			return err
		}
	}
	return nil
}

// find returns module names for a name or alias: nil when unknown, an
// empty non-nil slice when built in.
func (r *resolver) find(alias string) ([]string, error) {
	name := Normalize(alias)
	if _, ok := r.s.byName[name]; ok {
		return []string{name}, nil
	}
	if r.s.builtin[name] {
		r.noteBuiltin(name)
		return []string{}, nil
	}
	if b, ok := r.s.builtinAlias[alias]; ok {
		r.noteBuiltin(b)
		return []string{}, nil
	}
	mods, err := r.s.lookupAlias(alias)
	if err != nil || len(mods) == 0 {
		return nil, err
	}
	return mods, nil
}

func (r *resolver) noteBuiltin(name string) {
	if !r.seenBuiltin[name] {
		r.seenBuiltin[name] = true
		r.plan.Builtin = append(r.plan.Builtin, name)
	}
}

func (r *resolver) visit(name string) error {
	switch r.state[name] {
	case 2:
		return nil
	case 1:
		// Only soft dependencies can loop (depends= comes from the
		// linker); modprobe breaks such loops the same way.
		return nil
	}
	r.state[name] = 1
	m := r.s.byName[name]
	in, err := r.s.Info(m)
	if err != nil {
		return err
	}
	for _, d := range in.SoftPre {
		if err := r.want(d, "soft dependency of "+name, true); err != nil {
			return err
		}
	}
	for _, d := range in.Depends {
		if err := r.want(d, "needed by "+name, false); err != nil {
			return err
		}
	}
	r.state[name] = 2
	r.plan.Load = append(r.plan.Load, m)
	for _, d := range in.SoftPost {
		if err := r.want(d, "soft dependency of "+name, true); err != nil {
			return err
		}
	}
	return nil
}

func appendOnce(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}
