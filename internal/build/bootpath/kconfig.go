package bootpath

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// KconfigSymbol finds, in a kernel source tree, the Kconfig symbol that
// builds a driver for compatible: the .c file under drivers/ whose match
// table names the string, then the obj-$(CONFIG_X) line of its directory's Makefile
// (through one composite object, "foo-y += file.o"). It answers "what do
// I turn on" for a device the walk found without a driver.
func KconfigSymbol(src, compatible string) (symbol, file string, err error) {
	// An of_device_id entry or an *_OF_DECLARE(name, "compatible", fn):
	// a quirk table that merely mentions the string does not count.
	q := regexp.QuoteMeta(compatible)
	needle := regexp.MustCompile(`\.compatible\s*=\s*"` + q + `"|_DECLARE[A-Z_]*\(\s*\w+\s*,\s*"` + q + `"`)
	quoted := []byte(`"` + compatible + `"`)
	root := filepath.Join(src, "drivers")
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".c") || file != "" {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !bytes.Contains(b, quoted) || !needle.Match(b) {
			return nil
		}
		rel, _ := filepath.Rel(src, p)
		if sym := makefileSymbol(filepath.Dir(p), strings.TrimSuffix(filepath.Base(p), ".c")); sym != "" {
			symbol, file = sym, filepath.ToSlash(rel)
			return fs.SkipAll
		}
		return nil
	})
	if err != nil {
		return "", "", fmt.Errorf("searching %s for %q: %w", root, compatible, err)
	}
	if file == "" {
		return "", "", fmt.Errorf("no driver source under %s names %q", root, compatible)
	}
	return symbol, file, nil
}

// NameSymbols fills in the Kconfig symbol of every missing driver from a
// kernel source tree.
func (c *Closure) NameSymbols(src string) {
	for i, r := range c.Rows {
		if r.Kind != Missing {
			continue
		}
		for _, compat := range r.Compatible {
			if sym, _, err := KconfigSymbol(src, compat); err == nil {
				c.Rows[i].Kconfig = sym
				break
			}
		}
	}
}

var objLine = regexp.MustCompile(`^([A-Za-z0-9_-]+|obj)-(\$\(CONFIG_([A-Za-z0-9_]+)\)|y|m|objs)\s*[:+]?=\s*(.*)$`)

// makefileSymbol returns the CONFIG_ symbol (without the prefix) that
// builds object base in dir's Makefile.
func makefileSymbol(dir, base string) string {
	f, err := os.Open(filepath.Join(dir, "Makefile"))
	if err != nil {
		return ""
	}
	defer f.Close()
	type rule struct{ target, sym, objs string }
	var rules []rule
	sc := bufio.NewScanner(f)
	var line string
	for sc.Scan() {
		l := sc.Text()
		if strings.HasSuffix(l, "\\") {
			line += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		line += l
		if m := objLine.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			rules = append(rules, rule{target: m[1], sym: m[3], objs: " " + m[4] + " "})
		}
		line = ""
	}
	has := func(r rule, obj string) bool { return strings.Contains(r.objs, " "+obj+" ") }
	for _, r := range rules {
		if r.target == "obj" && r.sym != "" && has(r, base+".o") {
			return r.sym
		}
	}
	// A composite object: "foo-y += base.o" (or foo-objs), built by
	// "obj-$(CONFIG_X) += foo.o".
	for _, r := range rules {
		if r.target != "obj" && has(r, base+".o") {
			if r.sym != "" && r.target != "obj" {
				// foo-$(CONFIG_Y) += base.o: Y turns the file on.
				return r.sym
			}
			for _, o := range rules {
				if o.target == "obj" && o.sym != "" && has(o, path.Base(r.target)+".o") {
					return o.sym
				}
			}
		}
	}
	return ""
}
