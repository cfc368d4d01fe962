package deb

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
)

// Control holds the fields of a package's control file (or one stanza of
// an apt Packages index, which has the same syntax).
type Control struct {
	Package      string
	Version      string
	Architecture string
	Depends      string // raw; see ParseDepends
	// Fields has every field by the name as written; continuation lines
	// of multi-line fields are joined with "\n", leading space kept.
	Fields map[string]string
}

// Get returns a field by name, case-insensitively as Debian policy says.
func (c Control) Get(name string) string {
	if v, ok := c.Fields[name]; ok {
		return v
	}
	for k, v := range c.Fields {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// ParseControl parses one control stanza.
func ParseControl(b []byte) (Control, error) {
	c := Control{Fields: map[string]string{}}
	last := ""
	for i, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(line) == "" {
			if len(c.Fields) > 0 {
				break // one stanza only
			}
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if last == "" {
				return c, fmt.Errorf("line %d: continuation line before any field", i+1)
			}
			c.Fields[last] += "\n" + line
			continue
		}
		if line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return c, fmt.Errorf("line %d: %q is not a field", i+1, line)
		}
		last = k
		c.Fields[k] = strings.TrimSpace(v)
	}
	c.Package = c.Get("Package")
	c.Version = c.Get("Version")
	c.Architecture = c.Get("Architecture")
	c.Depends = c.Get("Depends")
	if c.Package == "" {
		return c, fmt.Errorf("no Package field")
	}
	return c, nil
}

// ReadStanzas calls fn with each stanza of a file of stanzas separated
// by blank lines (an apt Packages index, `apt-cache show` output) and
// the line the stanza starts at. A stanza that does not parse is an
// error naming that line.
func ReadStanzas(r io.Reader, fn func(line int, c Control) error) error {
	br := bufio.NewReaderSize(r, 1<<20)
	var stanza bytes.Buffer
	line, start := 0, 0
	flush := func() error {
		if stanza.Len() == 0 {
			return nil
		}
		ctl, err := ParseControl(stanza.Bytes())
		stanza.Reset()
		if err != nil {
			return fmt.Errorf("stanza at line %d: %w", start, err)
		}
		return fn(start, ctl)
	}
	for {
		l, err := br.ReadBytes('\n')
		if len(l) > 0 {
			line++
			if len(bytes.TrimSpace(l)) == 0 {
				if ferr := flush(); ferr != nil {
					return ferr
				}
			} else {
				if stanza.Len() == 0 {
					start = line
				}
				stanza.Write(l)
			}
		}
		if err == io.EOF {
			return flush()
		}
		if err != nil {
			return err
		}
	}
}

// Dep is one alternative of a dependency: "name:arch (op version)".
type Dep struct {
	Name    string
	Arch    string // "" unless written as name:arch
	Op      string // "", "<<", "<=", "=", ">=", ">>"
	Version string
}

// ParseDepends splits a Depends-style field into its clauses; each clause
// lists alternatives ("a | b"). Architecture restrictions ("[amd64]") and
// build profiles ("<!nocheck>") are dropped.
func ParseDepends(s string) ([][]Dep, error) {
	var out [][]Dep
	for _, clause := range strings.Split(s, ",") {
		clause = strings.TrimSpace(clause)
		if clause == "" {
			continue
		}
		var alts []Dep
		for _, alt := range strings.Split(clause, "|") {
			d, err := parseDep(strings.TrimSpace(alt))
			if err != nil {
				return nil, fmt.Errorf("dependency %q: %w", clause, err)
			}
			alts = append(alts, d)
		}
		out = append(out, alts)
	}
	return out, nil
}

func parseDep(s string) (Dep, error) {
	if i := strings.IndexAny(s, "[<"); i >= 0 && !strings.Contains(s[:i], "(") {
		s = strings.TrimSpace(s[:i])
	}
	var d Dep
	name, rest, _ := strings.Cut(s, "(")
	name = strings.TrimSpace(name)
	d.Name, d.Arch, _ = strings.Cut(name, ":")
	if d.Name == "" || strings.ContainsAny(d.Name, " \t") {
		return d, fmt.Errorf("bad package name %q", name)
	}
	if rest != "" {
		rel, _, ok := strings.Cut(rest, ")")
		if !ok {
			return d, fmt.Errorf("unclosed version relation")
		}
		rel = strings.TrimSpace(rel)
		for _, op := range []string{"<<", "<=", ">=", ">>", "=", "<", ">"} {
			if strings.HasPrefix(rel, op) {
				d.Op = op
				d.Version = strings.TrimSpace(rel[len(op):])
				break
			}
		}
		if d.Op == "" || d.Version == "" {
			return d, fmt.Errorf("bad version relation %q", rel)
		}
	}
	return d, nil
}
