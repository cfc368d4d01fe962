// Package kconfig reads just enough of a kernel's Kconfig files to explain
// why a requested symbol did not survive: which symbols exist, their
// type, whether they have a prompt and under which condition, their
// "depends on" (including enclosing if/menu/choice blocks) and who
// selects them. It is not a Kconfig implementation: the kernel's own
// scripts/kconfig resolves the config; this only explains the result.
//
// The parser is tolerant so it reads 4.x to 6.x trees: unknown lines are
// skipped, expressions it cannot parse count as satisfied, missing
// sourced files are noted in Tree.Warnings.
package kconfig

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Tree is the parsed Kconfig of one source tree for one architecture.
type Tree struct {
	Symbols  map[string]*Symbol
	Warnings []string
	Files    int
}

// Symbol is a config symbol with all its definitions.
type Symbol struct {
	Name       string
	Type       string // bool, tristate, string, int, hex, or "" if unknown
	Defs       []*Def
	SelectedBy []*Select
}

// Def is one "config NAME" entry.
type Def struct {
	File string
	Line int
	// Depends is the full dependency: enclosing if, menu and choice blocks
	// and the entry's own "depends on" lines; nil means none.
	Depends Expr
	// Prompt says the entry has a prompt the user can answer; PromptIf is
	// its "if" condition (nil = always when Depends holds).
	Prompt   bool
	PromptIf Expr
}

// Select is a "select" or "imply" of a symbol by another.
type Select struct {
	By    string
	Imply bool
	If    Expr // nil: unconditional
	File  string
	Line  int
}

// Parse reads the Kconfig tree of the source in srcDir for arch (e.g.
// "arm64"), starting at the top-level Kconfig (or arch/<arch>/Kconfig on
// trees without one).
func Parse(srcDir, arch string) (*Tree, error) {
	p := &parser{src: srcDir, arch: arch, t: &Tree{Symbols: map[string]*Symbol{}}, seen: map[string]bool{}}
	top := "Kconfig"
	if _, err := os.Stat(filepath.Join(srcDir, top)); err != nil {
		top = filepath.Join("arch", arch, "Kconfig")
		if _, err := os.Stat(filepath.Join(srcDir, top)); err != nil {
			return nil, fmt.Errorf("%s: no Kconfig or %s; is it a kernel source tree?", srcDir, top)
		}
	}
	if err := p.file(top, nil); err != nil {
		return nil, err
	}
	if len(p.t.Symbols) == 0 {
		return nil, fmt.Errorf("%s: no config symbols found in Kconfig files", srcDir)
	}
	return p.t, nil
}

type parser struct {
	src, arch string
	t         *Tree
	seen      map[string]bool
}

type blockKind int

const (
	blockIf blockKind = iota
	blockMenu
	blockChoice
)

type block struct {
	kind blockKind
	dep  Expr
}

// entry is what the lines currently being read belong to.
type entry struct {
	def    *Def   // a config/menuconfig
	sym    string // its symbol
	own    []Expr // its own depends on lines
	header *block // a menu or choice whose header (depends on) is being read
}

var (
	assignRE = regexp.MustCompile(`^[A-Za-z0-9_-]+\s*(:=|\+=|=)`)
	varRE    = regexp.MustCompile(`\$\(?(SRCARCH|ARCH|HEADER_ARCH)\)?`)
)

// file parses one Kconfig file; outer is the dependency of the blocks
// around the "source" line that included it.
func (p *parser) file(rel string, outer []*block) error {
	path := filepath.Join(p.src, rel)
	if p.seen[path] {
		return nil
	}
	p.seen[path] = true
	fh, err := os.Open(path)
	if err != nil {
		return err
	}
	defer fh.Close()
	p.t.Files++

	stack := append([]*block{}, outer...)
	var cur entry
	finish := func() {
		if cur.def != nil {
			cur.def.Depends = And(append(blockDeps(stack), cur.own...)...)
		}
		cur = entry{}
	}

	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	lineNo, helpIndent, inHelp := 0, -1, false
	var pending string
	pendingLine := 0
	for sc.Scan() {
		lineNo++
		raw := sc.Text()
		if inHelp {
			if strings.TrimSpace(raw) == "" {
				continue
			}
			ind := indent(raw)
			if helpIndent < 0 {
				helpIndent = ind
			}
			if ind >= helpIndent && ind > 0 {
				continue
			}
			inHelp = false
		}
		if pending == "" {
			pendingLine = lineNo
		}
		if strings.HasSuffix(raw, "\\") {
			pending += strings.TrimSuffix(raw, "\\") + " "
			continue
		}
		line := strings.TrimSpace(pending + raw)
		pending = ""
		n := pendingLine
		if line == "" || line[0] == '#' {
			continue
		}
		kw, rest := splitWord(line)
		switch kw {
		case "config", "menuconfig":
			finish()
			name := strings.TrimSpace(rest)
			sym := p.sym(name)
			cur.def = &Def{File: rel, Line: n}
			cur.sym = name
			sym.Defs = append(sym.Defs, cur.def)
		case "choice":
			finish()
			b := &block{kind: blockChoice}
			stack = append(stack, b)
			cur.header = b
		case "menu":
			finish()
			b := &block{kind: blockMenu}
			stack = append(stack, b)
			cur.header = b
		case "endchoice", "endmenu", "endif":
			finish()
			want := map[string]blockKind{"endchoice": blockChoice, "endmenu": blockMenu, "endif": blockIf}[kw]
			if len(stack) > len(outer) && stack[len(stack)-1].kind == want {
				stack = stack[:len(stack)-1]
			} else {
				p.warn("%s:%d: %s without its opening line", rel, n, kw)
			}
		case "if":
			finish()
			stack = append(stack, &block{kind: blockIf, dep: p.expr(rel, n, rest)})
		case "comment", "mainmenu":
			finish()
		case "source", "rsource", "osource", "orsource":
			finish()
			p.source(rel, n, kw, rest, stack)
		case "help", "---help---":
			inHelp, helpIndent = true, -1
		case "depends":
			dep := p.expr(rel, n, strings.TrimPrefix(strings.TrimSpace(rest), "on"))
			switch {
			case cur.def != nil:
				cur.own = append(cur.own, dep)
			case cur.header != nil:
				cur.header.dep = And(cur.header.dep, dep)
			}
		case "bool", "tristate", "string", "int", "hex", "boolean", "def_bool", "def_tristate", "prompt":
			if cur.def == nil {
				continue
			}
			if kw != "prompt" {
				typ := strings.TrimPrefix(strings.TrimPrefix(kw, "def_"), "")
				if typ == "boolean" {
					typ = "bool"
				}
				p.t.Symbols[cur.sym].Type = typ
			}
			if kw == "def_bool" || kw == "def_tristate" {
				continue
			}
			if prompt, cond := splitPrompt(rest); prompt {
				cur.def.Prompt = true
				if cond != "" {
					cur.def.PromptIf = p.expr(rel, n, cond)
				}
			}
		case "select", "imply":
			if cur.def == nil {
				continue
			}
			target, cond := splitIf(rest)
			s := &Select{By: cur.sym, Imply: kw == "imply", File: rel, Line: n}
			if cond != "" {
				s.If = p.expr(rel, n, cond)
			}
			// The selecting symbol's own dependencies are checked when
			// the select is used; keep only the if condition here.
			p.sym(strings.TrimSpace(target)).SelectedBy = append(p.sym(strings.TrimSpace(target)).SelectedBy, s)
		default:
			if assignRE.MatchString(line) {
				continue // a macro definition (5.x+)
			}
			// default, range, option, visible, modules, transitional...
		}
	}
	finish()
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(stack) != len(outer) {
		p.warn("%s: %d unclosed if/menu/choice blocks", rel, len(stack)-len(outer))
	}
	return nil
}

func (p *parser) source(rel string, n int, kw, rest string, stack []*block) {
	arg := strings.Trim(strings.TrimSpace(rest), `"`)
	arg = varRE.ReplaceAllString(arg, p.arch)
	if strings.Contains(arg, "$") {
		p.warn("%s:%d: cannot expand %q", rel, n, arg)
		return
	}
	if strings.HasPrefix(kw, "r") || strings.HasPrefix(kw, "or") {
		arg = filepath.Join(filepath.Dir(rel), arg)
	}
	matches, _ := filepath.Glob(filepath.Join(p.src, arg))
	sort.Strings(matches)
	if len(matches) == 0 {
		if !strings.HasPrefix(kw, "o") {
			p.warn("%s:%d: sourced file %s not found", rel, n, arg)
		}
		return
	}
	for _, m := range matches {
		r, _ := filepath.Rel(p.src, m)
		if err := p.file(r, stack); err != nil {
			p.warn("%s:%d: %v", rel, n, err)
		}
	}
}

func (p *parser) sym(name string) *Symbol {
	s := p.t.Symbols[name]
	if s == nil {
		s = &Symbol{Name: name}
		p.t.Symbols[name] = s
	}
	return s
}

func (p *parser) expr(file string, line int, s string) Expr {
	e, err := ParseExpr(strings.TrimSpace(s))
	if err != nil {
		p.warn("%s:%d: %v", file, line, err)
		return constExpr{"$(unparsed)"}
	}
	return e
}

func (p *parser) warn(format string, a ...any) {
	p.t.Warnings = append(p.t.Warnings, fmt.Sprintf(format, a...))
}

func blockDeps(stack []*block) []Expr {
	var deps []Expr
	for _, b := range stack {
		if b.dep != nil {
			deps = append(deps, b.dep)
		}
	}
	return deps
}

func indent(s string) int {
	n := 0
	for _, c := range s {
		switch c {
		case ' ':
			n++
		case '\t':
			n = (n/8 + 1) * 8
		default:
			return n
		}
	}
	return n
}

func splitWord(line string) (string, string) {
	i := strings.IndexAny(line, " \t")
	if i < 0 {
		return line, ""
	}
	return line[:i], line[i+1:]
}

// splitPrompt reads `"text" [if cond]` after a type keyword.
func splitPrompt(rest string) (bool, string) {
	rest = strings.TrimSpace(rest)
	if rest == "" || (rest[0] != '"' && rest[0] != '\'') {
		return false, ""
	}
	q := rest[0]
	i := 1
	for i < len(rest) && rest[i] != q {
		if rest[i] == '\\' {
			i++
		}
		i++
	}
	after := strings.TrimSpace(rest[min(i+1, len(rest)):])
	if c, ok := strings.CutPrefix(after, "if "); ok {
		return true, c
	}
	return true, ""
}

// splitIf splits `X if cond`.
func splitIf(rest string) (string, string) {
	rest = strings.TrimSpace(rest)
	if i := strings.Index(rest, " if "); i >= 0 {
		return rest[:i], rest[i+4:]
	}
	return rest, ""
}
