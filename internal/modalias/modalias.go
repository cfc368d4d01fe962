// Package modalias matches device modaliases against module alias
// patterns the way the kernel's userspace does (kmod's fnmatch), and
// reads and writes the coldplug index an initramfs carries: which module
// files it holds, in which order each loads, and their aliases. It
// imports nothing beyond the standard library, so nodeinit (PID 1 of a
// small arm64 initramfs) and the builder can share it.
package modalias

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
)

// Match reports whether the modalias s matches the alias pattern, with
// fnmatch(3) rules and no flags, as kmod matches modules.alias: '*' is
// any run of bytes ('/' included), '?' any one byte, "[...]" a set
// ("[!...]" or "[^...]" its complement, "a-z" a range) and '\' quotes
// the next byte. A '[' without its ']' is an ordinary byte.
func Match(pattern, s string) bool {
	// Backtracking over the last '*' only is enough: a later '*' can
	// absorb whatever an earlier one would have.
	p, i := 0, 0
	starP, starI := -1, 0
	for i < len(s) {
		if p < len(pattern) {
			switch c := pattern[p]; c {
			case '*':
				starP, starI = p, i
				p++
				continue
			case '?':
				p++
				i++
				continue
			case '[':
				if ok, n := matchSet(pattern[p:], s[i]); n > 0 {
					if ok {
						p += n
						i++
						continue
					}
					break
				}
				if s[i] == '[' {
					p++
					i++
					continue
				}
			case '\\':
				if p+1 < len(pattern) {
					if pattern[p+1] == s[i] {
						p += 2
						i++
						continue
					}
					break
				}
				fallthrough
			default:
				if c == s[i] {
					p++
					i++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		// Let the last '*' take one more byte and retry.
		starI++
		p, i = starP+1, starI
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// matchSet matches c against the set at the start of pat (which starts
// with '['). n is the set's length in pat, 0 when the set has no ']'.
func matchSet(pat string, c byte) (ok bool, n int) {
	i := 1
	negate := false
	if i < len(pat) && (pat[i] == '!' || pat[i] == '^') {
		negate = true
		i++
	}
	first := true
	for i < len(pat) {
		lo := pat[i]
		if lo == ']' && !first {
			return ok != negate, i + 1
		}
		first = false
		if lo == '\\' && i+1 < len(pat) {
			i++
			lo = pat[i]
		}
		i++
		hi := lo
		if i+1 < len(pat) && pat[i] == '-' && pat[i+1] != ']' {
			hi = pat[i+1]
			i += 2
			if hi == '\\' && i < len(pat) {
				hi = pat[i]
				i++
			}
		}
		if lo <= c && c <= hi {
			ok = true
		}
	}
	return false, 0
}

// Module is one module file an initramfs carries for coldplug.
type Module struct {
	Name string // normalised ('_', not '-'), as in /proc/modules
	Path string // absolute path inside the initramfs
	// Load is the load order for this module: the modules it needs
	// first, then itself last (soft "post:" dependencies may follow it).
	Load []string
}

// Alias says a module handles devices whose modalias matches Pattern.
type Alias struct {
	Pattern string
	Module  string
}

// Index is what nodeinit needs for coldplug.
type Index struct {
	Modules []Module
	Aliases []Alias

	byName map[string]int
}

// Format of the index file, one record a line, fields separated by one
// space (neither module paths nor aliases hold spaces):
//
//	module NAME PATH LOAD...
//	alias PATTERN NAME
//
// Lines starting with '#' are comments. Marshal sorts both kinds, so the
// same index is the same bytes.
const header = "# nodeinit coldplug index: module NAME PATH LOAD-ORDER...; alias PATTERN NAME\n"

// Marshal returns the index file's bytes. Every name in a load order and
// every aliased module must have a module record.
func (x *Index) Marshal() ([]byte, error) {
	if err := x.check(); err != nil {
		return nil, err
	}
	mods := append([]Module(nil), x.Modules...)
	sort.Slice(mods, func(i, j int) bool { return mods[i].Name < mods[j].Name })
	als := append([]Alias(nil), x.Aliases...)
	sort.Slice(als, func(i, j int) bool {
		if als[i].Pattern != als[j].Pattern {
			return als[i].Pattern < als[j].Pattern
		}
		return als[i].Module < als[j].Module
	})
	var b bytes.Buffer
	b.WriteString(header)
	for _, m := range mods {
		fmt.Fprintf(&b, "module %s %s %s\n", m.Name, m.Path, strings.Join(m.Load, " "))
	}
	for i, a := range als {
		if i > 0 && a == als[i-1] {
			continue
		}
		fmt.Fprintf(&b, "alias %s %s\n", a.Pattern, a.Module)
	}
	return b.Bytes(), nil
}

// Parse reads an index file.
func Parse(r io.Reader) (*Index, error) {
	x := &Index{}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		switch {
		case f[0] == "module" && len(f) >= 4:
			x.Modules = append(x.Modules, Module{Name: f[1], Path: f[2], Load: f[3:]})
		case f[0] == "alias" && len(f) == 3:
			x.Aliases = append(x.Aliases, Alias{Pattern: f[1], Module: f[2]})
		default:
			return nil, fmt.Errorf("coldplug index line %d: want \"module NAME PATH LOAD...\" or \"alias PATTERN NAME\", got %q", n, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("coldplug index: %w", err)
	}
	if err := x.check(); err != nil {
		return nil, err
	}
	return x, nil
}

// check indexes the modules by name and checks every reference.
func (x *Index) check() error {
	x.byName = make(map[string]int, len(x.Modules))
	for i, m := range x.Modules {
		if m.Name == "" || m.Path == "" || strings.ContainsAny(m.Name+m.Path, " \t\n") {
			return fmt.Errorf("coldplug index: bad module record %q %q", m.Name, m.Path)
		}
		if _, dup := x.byName[m.Name]; dup {
			return fmt.Errorf("coldplug index: module %s listed twice", m.Name)
		}
		x.byName[m.Name] = i
	}
	for _, m := range x.Modules {
		self := false
		for _, l := range m.Load {
			if _, ok := x.byName[l]; !ok {
				return fmt.Errorf("coldplug index: module %s needs %s, which has no module record", m.Name, l)
			}
			self = self || l == m.Name
		}
		if !self {
			return fmt.Errorf("coldplug index: module %s is missing from its own load order", m.Name)
		}
	}
	for _, a := range x.Aliases {
		if _, ok := x.byName[a.Module]; !ok || a.Pattern == "" || strings.ContainsAny(a.Pattern, " \t\n") {
			return fmt.Errorf("coldplug index: bad alias %q for module %q", a.Pattern, a.Module)
		}
	}
	return nil
}

// Lookup returns the modules whose aliases match the modalias, sorted,
// each once.
func (x *Index) Lookup(modalias string) []string {
	var out []string
	for _, a := range x.Aliases {
		if Match(a.Pattern, modalias) {
			out = append(out, a.Module)
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// Module returns the named module's record.
func (x *Index) Module(name string) (Module, bool) {
	if x.byName == nil {
		if err := x.check(); err != nil {
			return Module{}, false
		}
	}
	i, ok := x.byName[name]
	if !ok {
		return Module{}, false
	}
	return x.Modules[i], true
}
