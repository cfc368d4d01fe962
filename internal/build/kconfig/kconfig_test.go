package kconfig

import (
	"strings"
	"testing"
)

func vals(m map[string]string) Values {
	return func(s string) string {
		if v, ok := m[s]; ok {
			return v
		}
		return "n"
	}
}

func TestParseExpr(t *testing.T) {
	v := vals(map[string]string{"A": "y", "B": "m", "N": "16", "S": `"abc"`})
	for _, tc := range []struct {
		expr    string
		want    int
		explain string
	}{
		{"A", Yes, "A (=y)"},
		{"A && B", Mod, "A (=y) && B (=m)"},
		{"C || B", Mod, "C (=n) || B (=m)"},
		{"!C", Yes, "!C (=n)"},
		{"!B", Mod, "!B (=m)"},
		{"A && (C || B)", Mod, "A (=y) && (C (=n) || B (=m))"},
		{"B = m", Yes, "B (=m) = m"},
		{"A != y", No, "A (=y) != y"},
		{`S = "abc"`, Yes, `S (="abc") = "abc"`},
		{"N >= 10 && N < 0x10", No, "N (=16) >= 10 && N (=16) < 0x10"},
		{"N > 10", Yes, "N (=16) > 10"},
		{"$(cc-option,-fstack-protector) && A", Yes, "$(cc-option,-fstack-protector) && A (=y)"},
		{"m", Mod, "m"},
		{"A # trailing comment", Yes, "A (=y)"},
	} {
		e, err := ParseExpr(tc.expr)
		if err != nil {
			t.Errorf("%q: %v", tc.expr, err)
			continue
		}
		if got := e.Eval(v); got != tc.want {
			t.Errorf("%q = %d, want %d", tc.expr, got, tc.want)
		}
		if got := e.Explain(v); got != tc.explain {
			t.Errorf("%q explained %q, want %q", tc.expr, got, tc.explain)
		}
	}
	for _, bad := range []string{"A &&", "(A", "A B", `"open`, "&& A"} {
		if _, err := ParseExpr(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParseTree(t *testing.T) {
	tr, err := Parse("testdata/tree", "arm64")
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Warnings) != 0 {
		t.Errorf("warnings: %v", tr.Warnings)
	}
	if tr.Files != 3 {
		t.Errorf("files = %d, want 3", tr.Files)
	}
	for _, tc := range []struct {
		sym, typ, deps string
		prompt         bool
		promptIf       string
	}{
		{"FUTEX", "bool", "", true, "EXPERT"},
		{"IPC_NS", "bool", "NAMESPACES && (SYSVIPC || POSIX_MQUEUE)", true, ""},
		{"NET", "bool", "!UML", true, ""},
		{"NET_DEV", "tristate", "!UML && NET && MODULES", true, ""},
		{"CRC32", "tristate", "", false, ""},
		{"COMP_A", "bool", "MODULES", true, ""},
		{"VIRTIO_BLK", "tristate", "BLK_DEV && VIRTIO_ARCH", true, ""},
		{"ARM64", "bool", "", false, ""},
		{"STACK", "bool", "", true, "$(cc-option,-fstack-protector)"},
		{"LEVEL", "int", "", true, ""},
		{"UML", "bool", "X86", false, ""},
	} {
		s := tr.Symbols[tc.sym]
		if s == nil || len(s.Defs) != 1 {
			t.Errorf("%s: %+v", tc.sym, s)
			continue
		}
		d := s.Defs[0]
		deps, pif := "", ""
		if d.Depends != nil {
			deps = d.Depends.String()
		}
		if d.PromptIf != nil {
			pif = d.PromptIf.String()
		}
		if s.Type != tc.typ || deps != tc.deps || d.Prompt != tc.prompt || pif != tc.promptIf {
			t.Errorf("%s: type %q deps %q prompt %v if %q; want %q %q %v %q", tc.sym, s.Type, deps, d.Prompt, pif, tc.typ, tc.deps, tc.prompt, tc.promptIf)
		}
	}
	if s := tr.Symbols["NOT_A_SYMBOL"]; s != nil {
		t.Errorf("help text parsed as a symbol")
	}
	var by []string
	for _, s := range tr.Symbols["CRC32"].SelectedBy {
		by = append(by, s.By)
	}
	if strings.Join(by, ",") != "ARM64,NET_DEV" {
		t.Errorf("CRC32 selected by %v", by)
	}
	if tr.Symbols["CRC32"].SelectedBy[0].Imply != true || tr.Symbols["CRC32"].SelectedBy[1].If.String() != "NET" {
		t.Errorf("select details wrong: %+v %+v", tr.Symbols["CRC32"].SelectedBy[0], tr.Symbols["CRC32"].SelectedBy[1])
	}
}

// A 4.x tree has no top-level Kconfig in some layouts; missing sourced
// files and stray endifs are warnings, not errors.
func TestParseTolerant(t *testing.T) {
	dir := t.TempDir()
	write(t, dir+"/arch/arm64/Kconfig", "config A\n\tbool \"a\"\nsource \"missing/Kconfig\"\nendif\nsource \"$(UNKNOWN)/Kconfig\"\n")
	tr, err := Parse(dir, "arm64")
	if err != nil {
		t.Fatal(err)
	}
	if tr.Symbols["A"] == nil || len(tr.Warnings) != 3 {
		t.Errorf("symbols %v warnings %q", tr.Symbols, tr.Warnings)
	}
	if _, err := Parse(t.TempDir(), "arm64"); err == nil || !strings.Contains(err.Error(), "is it a kernel source tree") {
		t.Errorf("empty dir: %v", err)
	}
}

// A 4.x top-level Kconfig: $SRCARCH from option env, "---help---",
// "boolean", "def_bool" with conditions.
func TestParse4x(t *testing.T) {
	dir := t.TempDir()
	write(t, dir+"/Kconfig", `mainmenu "Linux/$ARCH $KERNELVERSION Kernel Configuration"

config SRCARCH
	string
	option env="SRCARCH"

source "arch/$SRCARCH/Kconfig"
`)
	write(t, dir+"/arch/arm64/Kconfig", `config ARM64
	def_bool y
	select HAVE_X

config HAVE_X
	boolean

source "init/Kconfig"
`)
	write(t, dir+"/init/Kconfig", `config DEVPTS_MULTIPLE_INSTANCES
	bool "Support multiple instances of devpts"
	depends on UNIX98_PTYS
	default n
	---help---
	  Enable support for multiple instances of devpts filesystem.
	  If you want to have isolated PTY namespaces (eg: in containers),
	  say Y here.  Otherwise, say N.

config UNIX98_PTYS
	bool "Unix98 PTY support" if EXPERT
	default y
`)
	tr, err := Parse(dir, "arm64")
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Warnings) != 0 || tr.Files != 3 {
		t.Errorf("files %d warnings %v", tr.Files, tr.Warnings)
	}
	d := tr.Symbols["DEVPTS_MULTIPLE_INSTANCES"]
	if d == nil || d.Defs[0].Depends.String() != "UNIX98_PTYS" || tr.Symbols["HAVE_X"].Type != "bool" {
		t.Errorf("symbols: %+v", tr.Symbols)
	}
	if u := tr.Symbols["UNIX98_PTYS"]; u == nil || u.Defs[0].PromptIf.String() != "EXPERT" {
		t.Errorf("UNIX98_PTYS: %+v", u)
	}
}
