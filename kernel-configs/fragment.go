package kernelconfig

import (
	"bufio"
	"embed"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/mkimage/mkimage/boards"
)

//go:embed *.config soc/*.config
var embedded embed.FS

// Mode says how much a setting matters; see the package comment.
type Mode int

const (
	Required Mode = iota
	Optional
	Builtin
)

func (m Mode) String() string {
	switch m {
	case Optional:
		return "optional"
	case Builtin:
		return "builtin"
	}
	return "required"
}

// Setting is one CONFIG_ line of a fragment. Value is "y", "m", "n" (for
// "is not set"), or the literal text after '=' (strings keep their quotes).
type Setting struct {
	Symbol string // without the CONFIG_ prefix
	Value  string
	Mode   Mode
	File   string
	Line   int
}

// Source names where the setting came from, "file:line".
func (s Setting) Source() string { return fmt.Sprintf("%s:%d", s.File, s.Line) }

// String renders the setting as a .config line.
func (s Setting) String() string {
	if s.Value == "n" {
		return "# CONFIG_" + s.Symbol + " is not set"
	}
	return "CONFIG_" + s.Symbol + "=" + s.Value
}

// Fragment is a parsed fragment file.
type Fragment struct {
	Name     string
	Settings []Setting
}

var (
	setRE    = regexp.MustCompile(`^CONFIG_([A-Za-z0-9_]+)=(.*)$`)
	unsetRE  = regexp.MustCompile(`^#\s*CONFIG_([A-Za-z0-9_]+) is not set\s*$`)
	markerRE = regexp.MustCompile(`^#\s*@([a-z]+)\s*$`)
	valueRE  = regexp.MustCompile(`^(y|m|n|-?[0-9]+|0x[0-9a-fA-F]+|"([^"\\]|\\.)*")$`)
)

// ParseFragment reads a fragment; name is used in messages and as the
// File of each setting.
func ParseFragment(name string, r io.Reader) (*Fragment, error) {
	f := &Fragment{Name: name}
	mode := Required
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if m := markerRE.FindStringSubmatch(line); m != nil {
			switch m[1] {
			case "required":
				mode = Required
			case "optional":
				mode = Optional
			case "builtin":
				mode = Builtin
			default:
				return nil, fmt.Errorf("%s:%d: unknown marker @%s (want @required, @optional or @builtin)", name, n, m[1])
			}
			continue
		}
		if m := unsetRE.FindStringSubmatch(line); m != nil {
			f.Settings = append(f.Settings, Setting{Symbol: m[1], Value: "n", Mode: mode, File: name, Line: n})
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := setRE.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("%s:%d: %q is not a CONFIG_X=value or \"# CONFIG_X is not set\" line", name, n, line)
		}
		if !valueRE.MatchString(m[2]) {
			return nil, fmt.Errorf("%s:%d: CONFIG_%s has bad value %q (want y, m, n, a number or a \"quoted string\")", name, n, m[1], m[2])
		}
		f.Settings = append(f.Settings, Setting{Symbol: m[1], Value: m[2], Mode: mode, File: name, Line: n})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading fragment %s: %w", name, err)
	}
	return f, nil
}

// ReadFragmentFile parses a fragment file from disk.
func ReadFragmentFile(file string) (*Fragment, error) {
	fh, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("fragment: %w", err)
	}
	defer fh.Close()
	return ParseFragment(file, fh)
}

// Names lists the embedded fragments ("base", "soc/qemu-virt", ...).
func Names() []string {
	var names []string
	fs.WalkDir(embedded, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && path.Ext(p) == ".config" {
			names = append(names, strings.TrimSuffix(p, ".config"))
		}
		return nil
	})
	sort.Strings(names)
	return names
}

// Embedded returns the named embedded fragment, e.g. "lxc" or
// "soc/meson-gxbb". Settings name it as "kernel-configs/<name>.config".
func Embedded(name string) (*Fragment, error) {
	if strings.Contains(name, "..") || strings.HasSuffix(name, ".config") {
		return nil, fmt.Errorf("unknown kernel config fragment %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	data, err := embedded.ReadFile(name + ".config")
	if err != nil {
		return nil, fmt.Errorf("unknown kernel config fragment %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	return ParseFragment("kernel-configs/"+name+".config", strings.NewReader(string(data)))
}

// ForBoard returns the board's fragments in the order its file names them.
func ForBoard(b *boards.Board) ([]*Fragment, error) {
	if len(b.KernelFragments) == 0 {
		return nil, fmt.Errorf("board %s names no kernel_fragments", b.Name)
	}
	var frags []*Fragment
	for _, n := range b.KernelFragments {
		f, err := Embedded(n)
		if err != nil {
			return nil, fmt.Errorf("board %s: %w", b.Name, err)
		}
		frags = append(frags, f)
	}
	return frags, nil
}
