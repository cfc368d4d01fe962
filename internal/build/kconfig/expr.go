package kconfig

import (
	"fmt"
	"strings"
)

// Tristate values as Kconfig orders them.
const (
	No  = 0
	Mod = 1
	Yes = 2
)

// Values looks up a symbol's value in a resolved config: "y", "m", "n",
// a number or a quoted string; "n" for unset symbols.
type Values func(sym string) string

// Expr is a dependency expression.
type Expr interface {
	// Eval returns No, Mod or Yes.
	Eval(v Values) int
	// Explain renders the expression with each symbol's value, e.g.
	// "BLK_DEV (=n) && !UML (=n)".
	Explain(v Values) string
	String() string
}

type symExpr struct{ name string }
type constExpr struct{ text string } // y, m, n, numbers, "strings", unknown $(macros)
type notExpr struct{ x Expr }
type andExpr struct{ a, b Expr }
type orExpr struct{ a, b Expr }
type cmpExpr struct {
	op   string
	a, b Expr
}

func tri(s string) int {
	switch s {
	case "y":
		return Yes
	case "m":
		return Mod
	}
	return No
}

func (e symExpr) Eval(v Values) int { return tri(v(e.name)) }
func (e symExpr) String() string    { return e.name }
func (e symExpr) Explain(v Values) string {
	return fmt.Sprintf("%s (=%s)", e.name, v(e.name))
}

func (e constExpr) Eval(Values) int {
	if strings.HasPrefix(e.text, "$(") {
		return Yes // a toolchain test we cannot run: assume it passes
	}
	return tri(e.text)
}
func (e constExpr) String() string        { return e.text }
func (e constExpr) Explain(Values) string { return e.text }

func (e notExpr) Eval(v Values) int { return Yes - e.x.Eval(v) }
func (e notExpr) String() string    { return "!" + paren(e.x, e.x.String()) }
func (e notExpr) Explain(v Values) string {
	return "!" + paren(e.x, e.x.Explain(v))
}

func (e andExpr) Eval(v Values) int { return min(e.a.Eval(v), e.b.Eval(v)) }
func (e andExpr) String() string {
	return orParen(e.a, e.a.String()) + " && " + orParen(e.b, e.b.String())
}
func (e andExpr) Explain(v Values) string {
	return orParen(e.a, e.a.Explain(v)) + " && " + orParen(e.b, e.b.Explain(v))
}

func (e orExpr) Eval(v Values) int { return max(e.a.Eval(v), e.b.Eval(v)) }
func (e orExpr) String() string    { return e.a.String() + " || " + e.b.String() }
func (e orExpr) Explain(v Values) string {
	return e.a.Explain(v) + " || " + e.b.Explain(v)
}

func (e cmpExpr) value(x Expr, v Values) string {
	if s, ok := x.(symExpr); ok {
		return v(s.name)
	}
	return strings.Trim(x.String(), `"`)
}

func (e cmpExpr) Eval(v Values) int {
	a, b := strings.Trim(e.value(e.a, v), `"`), strings.Trim(e.value(e.b, v), `"`)
	var r bool
	switch e.op {
	case "=":
		r = a == b
	case "!=":
		r = a != b
	default:
		var x, y int64
		_, e1 := fmt.Sscan(a, &x)
		_, e2 := fmt.Sscan(b, &y)
		if e1 != nil || e2 != nil {
			return No
		}
		r = map[string]bool{"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[e.op]
	}
	if r {
		return Yes
	}
	return No
}
func (e cmpExpr) String() string { return e.a.String() + e.op + e.b.String() }
func (e cmpExpr) Explain(v Values) string {
	return e.a.Explain(v) + " " + e.op + " " + e.b.Explain(v)
}

func paren(x Expr, s string) string {
	switch x.(type) {
	case andExpr, orExpr, cmpExpr:
		return "(" + s + ")"
	}
	return s
}

func orParen(x Expr, s string) string {
	if _, ok := x.(orExpr); ok {
		return "(" + s + ")"
	}
	return s
}

// And joins expressions with &&; nil operands are dropped.
func And(xs ...Expr) Expr {
	var r Expr
	for _, x := range xs {
		switch {
		case x == nil:
		case r == nil:
			r = x
		default:
			r = andExpr{r, x}
		}
	}
	return r
}

// Conjuncts splits e at its top-level &&.
func Conjuncts(e Expr) []Expr {
	if e == nil {
		return nil
	}
	if a, ok := e.(andExpr); ok {
		return append(Conjuncts(a.a), Conjuncts(a.b)...)
	}
	return []Expr{e}
}

// Symbols lists the symbol names e mentions.
func Symbols(e Expr) []string {
	switch x := e.(type) {
	case symExpr:
		return []string{x.name}
	case notExpr:
		return Symbols(x.x)
	case andExpr:
		return append(Symbols(x.a), Symbols(x.b)...)
	case orExpr:
		return append(Symbols(x.a), Symbols(x.b)...)
	case cmpExpr:
		return append(Symbols(x.a), Symbols(x.b)...)
	}
	return nil
}

// ParseExpr parses a Kconfig expression. It is tolerant: what it cannot
// read becomes a constant that evaluates to y, so an odd line never
// blocks an explanation.
func ParseExpr(s string) (Expr, error) {
	toks, err := lex(s)
	if err != nil {
		return nil, err
	}
	p := &exprParser{toks: toks}
	e, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.i != len(p.toks) {
		return nil, fmt.Errorf("unexpected %q in %q", p.toks[p.i], s)
	}
	return e, nil
}

func lex(s string) ([]string, error) {
	var toks []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case c == '#':
			return toks, nil // trailing comment
		case strings.HasPrefix(s[i:], "&&"), strings.HasPrefix(s[i:], "||"),
			strings.HasPrefix(s[i:], "!="), strings.HasPrefix(s[i:], "<="), strings.HasPrefix(s[i:], ">="):
			toks = append(toks, s[i:i+2])
			i += 2
		case strings.ContainsRune("!()=<>", rune(c)):
			toks = append(toks, string(c))
			i++
		case c == '"' || c == '\'':
			j := i + 1
			for j < len(s) && s[j] != c {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string in %q", s)
			}
			toks = append(toks, `"`+s[i+1:j]+`"`)
			i = j + 1
		case c == '$' && i+1 < len(s) && s[i+1] == '(':
			depth, j := 0, i+1
			for ; j < len(s); j++ {
				if s[j] == '(' {
					depth++
				} else if s[j] == ')' {
					depth--
					if depth == 0 {
						break
					}
				}
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated $( in %q", s)
			}
			toks = append(toks, s[i:j+1])
			i = j + 1
		default:
			j := i
			for j < len(s) && (isWord(s[j])) {
				j++
			}
			if j == i {
				return nil, fmt.Errorf("unexpected %q in %q", c, s)
			}
			toks = append(toks, s[i:j])
			i = j
		}
	}
	return toks, nil
}

func isWord(c byte) bool {
	return c == '_' || c == '-' || c == '.' || c == '$' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

type exprParser struct {
	toks []string
	i    int
}

func (p *exprParser) peek() string {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	return ""
}

func (p *exprParser) or() (Expr, error) {
	a, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.peek() == "||" {
		p.i++
		b, err := p.and()
		if err != nil {
			return nil, err
		}
		a = orExpr{a, b}
	}
	return a, nil
}

func (p *exprParser) and() (Expr, error) {
	a, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.peek() == "&&" {
		p.i++
		b, err := p.unary()
		if err != nil {
			return nil, err
		}
		a = andExpr{a, b}
	}
	return a, nil
}

func (p *exprParser) unary() (Expr, error) {
	switch p.peek() {
	case "!":
		p.i++
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		return notExpr{x}, nil
	case "(":
		p.i++
		x, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.peek() != ")" {
			return nil, fmt.Errorf("missing )")
		}
		p.i++
		return x, nil
	}
	a, err := p.atom()
	if err != nil {
		return nil, err
	}
	switch op := p.peek(); op {
	case "=", "!=", "<", "<=", ">", ">=":
		p.i++
		b, err := p.atom()
		if err != nil {
			return nil, err
		}
		return cmpExpr{op, a, b}, nil
	}
	return a, nil
}

func (p *exprParser) atom() (Expr, error) {
	t := p.peek()
	if t == "" {
		return nil, fmt.Errorf("expression ends early")
	}
	p.i++
	switch {
	case t == "y" || t == "m" || t == "n" || strings.HasPrefix(t, `"`) || strings.HasPrefix(t, "$"):
		return constExpr{t}, nil
	case t[0] >= '0' && t[0] <= '9' || t[0] == '-':
		return constExpr{t}, nil
	case isWord(t[0]):
		return symExpr{t}, nil
	}
	return nil, fmt.Errorf("unexpected %q", t)
}
