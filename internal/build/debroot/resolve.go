package debroot

import (
	"fmt"
	"sort"
	"strings"

	"github.com/mkimage/mkimage/internal/build/deb"
)

// Resolve returns the closure of names over Depends and Pre-Depends, in
// an order where a package comes after what it depends on (Pre-Depends
// first; dependency cycles, which Debian has, are cut where found).
// Recommends are not followed. Of alternatives, one already chosen wins,
// else the first one the index can satisfy; a virtual name is satisfied
// by a chosen provider, else by its only (or first by name) provider.
// arch is the native architecture ("arm64").
func Resolve(ix *Index, arch string, names ...string) ([]*Pkg, error) {
	r := &resolver{ix: ix, arch: arch, chosen: map[string]*Pkg{}, why: map[string]string{}}
	var queue []*Pkg
	for _, n := range names {
		n, a, _ := strings.Cut(strings.TrimSpace(n), ":")
		if a != "" && a != arch && a != "native" && a != "any" {
			return nil, fmt.Errorf("package %q: architecture %s is not %s (only %s packages go into this root)", n+":"+a, a, arch, arch)
		}
		p, ok := ix.Get(n)
		if !ok {
			if prov := ix.providers[n]; len(prov) > 0 {
				p = pickProvider(prov)
			} else {
				return nil, fmt.Errorf("package %q is not in the %s package index (%s); check the name with `apt-cache search` or the suite", n, arch, strings.Join(shortNames(ix.Sources), ", "))
			}
		}
		if !r.archOK(p) {
			return nil, fmt.Errorf("package %q: index entry is for architecture %s, not %s", n, p.Arch, arch)
		}
		if _, dup := r.chosen[p.Name]; !dup {
			r.chosen[p.Name] = p
			r.why[p.Name] = "requested"
			queue = append(queue, p)
		}
	}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, field := range []struct {
			name    string
			clauses [][]deb.Dep
		}{{"Pre-Depends", p.PreDepends}, {"Depends", p.Depends}} {
			for _, alts := range field.clauses {
				q, err := r.choose(alts)
				if err != nil {
					return nil, fmt.Errorf("package %s %s (%s): %s %q: %w", p.Name, p.Version, r.chain(p.Name), field.name, clauseString(alts), err)
				}
				if _, ok := r.chosen[q.Name]; !ok {
					r.chosen[q.Name] = q
					r.why[q.Name] = p.Name
					queue = append(queue, q)
				}
			}
		}
	}
	return r.order(names), nil
}

type resolver struct {
	ix     *Index
	arch   string
	chosen map[string]*Pkg
	why    map[string]string // package -> the package that pulled it in
}

// chain says why a package is in the set: "needed by a, needed by b,
// requested".
func (r *resolver) chain(name string) string {
	var parts []string
	for i := 0; i < 20; i++ {
		w := r.why[name]
		if w == "requested" || w == "" {
			parts = append(parts, "requested")
			break
		}
		parts = append(parts, "needed by "+w)
		name = w
	}
	return strings.Join(parts, ", ")
}

func (r *resolver) archOK(p *Pkg) bool {
	return p.Arch == r.arch || p.Arch == "all" || p.Arch == ""
}

// satisfiedBy returns the packages (real first, then providers) that
// satisfy d, from the chosen set when chosen is true, else from the
// index; and why none does.
func (r *resolver) satisfiedBy(d deb.Dep, chosen bool) ([]*Pkg, string) {
	get := func(n string) (*Pkg, bool) {
		if chosen {
			p, ok := r.chosen[n]
			return p, ok
		}
		return r.ix.Get(n)
	}
	var out []*Pkg
	var why []string
	switch d.Arch {
	case "", "native", r.arch, "any":
	default:
		return nil, fmt.Sprintf("%s is qualified for architecture %s, this root is %s", d.Name, d.Arch, r.arch)
	}
	if p, ok := get(d.Name); ok {
		switch {
		case !r.archOK(p):
			why = append(why, fmt.Sprintf("%s is for architecture %s", p.Name, p.Arch))
		case d.Arch == "any" && p.MultiArch != "allowed":
			why = append(why, fmt.Sprintf("%s is not Multi-Arch: allowed, so it cannot satisfy %s:any", p.Name, p.Name))
		case !satisfies(p.Version, d.Op, d.Version):
			why = append(why, fmt.Sprintf("%s has version %s", p.Name, p.Version))
		default:
			out = append(out, p)
		}
	} else if !chosen {
		why = append(why, d.Name+" is not in the index")
	}
	var provs []*Pkg
	if chosen {
		for _, p := range r.chosen {
			for _, pr := range p.Provides {
				if pr.Name == d.Name {
					provs = append(provs, p)
				}
			}
		}
		sort.Slice(provs, func(i, j int) bool { return provs[i].Name < provs[j].Name })
	} else {
		provs = r.ix.providers[d.Name]
	}
	for _, p := range provs {
		if !r.archOK(p) || d.Arch == "any" && p.MultiArch != "allowed" {
			continue
		}
		for _, pr := range p.Provides {
			if pr.Name != d.Name {
				continue
			}
			if d.Op == "" || pr.Op == "=" && satisfies(pr.Version, d.Op, d.Version) {
				out = append(out, p)
				break
			}
			why = append(why, fmt.Sprintf("%s provides %s without a version that satisfies it", p.Name, d.Name))
		}
	}
	return out, strings.Join(why, "; ")
}

func (r *resolver) choose(alts []deb.Dep) (*Pkg, error) {
	for _, d := range alts {
		if ps, _ := r.satisfiedBy(d, true); len(ps) > 0 {
			return ps[0], nil
		}
	}
	var whys []string
	for _, d := range alts {
		ps, why := r.satisfiedBy(d, false)
		if len(ps) > 0 {
			if ps[0].Name == d.Name {
				return ps[0], nil
			}
			return pickProvider(ps), nil
		}
		whys = append(whys, why)
	}
	return nil, fmt.Errorf("nothing in the index satisfies it (%s)", strings.Join(whys, "; "))
}

// pickProvider prefers a provider of higher priority, then by name.
func pickProvider(ps []*Pkg) *Pkg {
	rank := map[string]int{"required": 0, "important": 1, "standard": 2, "optional": 3}
	best := ps[0]
	for _, p := range ps[1:] {
		rp, rb := rankOf(rank, p.Priority), rankOf(rank, best.Priority)
		if rp < rb || rp == rb && p.Name < best.Name {
			best = p
		}
	}
	return best
}

func rankOf(m map[string]int, s string) int {
	if v, ok := m[s]; ok {
		return v
	}
	return 9
}

// order lists the chosen packages dependencies first (depth first from
// the requested names, Pre-Depends before Depends), cycles cut.
func (r *resolver) order(names []string) []*Pkg {
	state := map[string]int{} // 1 visiting, 2 done
	var out []*Pkg
	var visit func(p *Pkg)
	visit = func(p *Pkg) {
		if state[p.Name] != 0 {
			return
		}
		state[p.Name] = 1
		for _, clauses := range [][][]deb.Dep{p.PreDepends, p.Depends} {
			for _, alts := range clauses {
				for _, d := range alts {
					if ps, _ := r.satisfiedBy(d, true); len(ps) > 0 {
						visit(ps[0])
						break
					}
				}
			}
		}
		state[p.Name] = 2
		out = append(out, p)
	}
	// Essential packages first, so every maintainer script finds them.
	var all []string
	for n := range r.chosen {
		all = append(all, n)
	}
	sort.Strings(all)
	for _, n := range all {
		if r.chosen[n].Essential {
			visit(r.chosen[n])
		}
	}
	for _, n := range names {
		n, _, _ = strings.Cut(strings.TrimSpace(n), ":")
		if p, ok := r.chosen[n]; ok {
			visit(p)
		}
	}
	for _, n := range all {
		visit(r.chosen[n])
	}
	return out
}

func clauseString(alts []deb.Dep) string {
	var s []string
	for _, d := range alts {
		x := d.Name
		if d.Arch != "" {
			x += ":" + d.Arch
		}
		if d.Op != "" {
			x += " (" + d.Op + " " + d.Version + ")"
		}
		s = append(s, x)
	}
	return strings.Join(s, " | ")
}

func shortNames(paths []string) []string {
	var out []string
	for _, p := range paths {
		if i := strings.LastIndexByte(p, '/'); i >= 0 {
			p = p[i+1:]
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return []string{"no index files"}
	}
	return out
}
