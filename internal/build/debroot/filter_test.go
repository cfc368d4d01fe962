package debroot

import (
	"archive/tar"
	"strings"
	"testing"
	"time"
)

func TestExcluded(t *testing.T) {
	docs := []PathFilter{{Pattern: "/usr/share/doc/*"}, {Include: true, Pattern: "/usr/share/doc/*/copyright"}}
	for _, tc := range []struct {
		name    string
		filters []PathFilter
		path    string
		typ     byte
		want    bool
	}{
		{"no filters", nil, "/usr/share/doc/bash/README", tar.TypeReg, false},
		{"no filter matches", docs, "/usr/bin/bash", tar.TypeReg, false},
		{"excluded", docs, "/usr/share/doc/bash/README", tar.TypeReg, true},
		{"'*' matches '/' (no FNM_PATHNAME)", docs, "/usr/share/doc/bash/examples/x/y", tar.TypeReg, true},
		{"'*' matches a leading dot (no FNM_PERIOD)", docs, "/usr/share/doc/.hidden", tar.TypeReg, true},
		{"include after exclude brings back", docs, "/usr/share/doc/bash/copyright", tar.TypeReg, false},
		{"include deeper is no match", docs, "/usr/share/doc/bash/x/copyright.gz", tar.TypeReg, true},
		{"the last match wins", []PathFilter{docs[1], docs[0]}, "/usr/share/doc/bash/copyright", tar.TypeReg, true},
		{"the directory itself is no match", docs, "/usr/share/doc", tar.TypeDir, false},
		{"an excluded directory an include needs stays", docs, "/usr/share/doc/bash", tar.TypeDir, false},
		{"so does a symlink", docs, "/usr/share/doc/libfoo", tar.TypeSymlink, false},
		{"a file at that path goes", docs, "/usr/share/doc/bash", tar.TypeReg, true},
		{"a hard link goes", docs, "/usr/share/doc/bash", tar.TypeLink, true},
		{"an include's fixed part is a plain prefix, as dpkg's strncmp", []PathFilter{{Pattern: "/usr/share/*"}, docs[1]}, "/usr/share/docs", tar.TypeDir, false},
		{"a directory no include needs goes", SlimFilters, "/usr/share/man/man1", tar.TypeDir, true},
		{"man page", SlimFilters, "/usr/share/man/man1/ls.1.gz", tar.TypeReg, true},
		{"translated man page", SlimFilters, "/usr/share/man/de/man1/ls.1.gz", tar.TypeReg, true},
		{"info", SlimFilters, "/usr/share/info/coreutils.info.gz", tar.TypeReg, true},
		{"copyright stays", SlimFilters, "/usr/share/doc/coreutils/copyright", tar.TypeReg, false},
		{"changelog goes", SlimFilters, "/usr/share/doc/coreutils/changelog.Debian.gz", tar.TypeReg, true},
		{"German goes", SlimFilters, "/usr/share/locale/de/LC_MESSAGES/coreutils.mo", tar.TypeReg, true},
		{"its directory too", SlimFilters, "/usr/share/locale/de", tar.TypeDir, true},
		{"English stays", SlimFilters, "/usr/share/locale/en_GB/LC_MESSAGES/coreutils.mo", tar.TypeReg, false},
		{"as does en@quot", SlimFilters, "/usr/share/locale/en@quot/LC_MESSAGES/x.mo", tar.TypeReg, false},
		{"locale.alias stays", SlimFilters, "/usr/share/locale/locale.alias", tar.TypeReg, false},
		{"the C locale is elsewhere", SlimFilters, "/usr/lib/locale/C.utf8/LC_CTYPE", tar.TypeReg, false},
		{"'?' is one byte", []PathFilter{{Pattern: "/etc/x?"}}, "/etc/x/", tar.TypeReg, true},
		{"a set", []PathFilter{{Pattern: "/etc/x[0-9]"}}, "/etc/x7", tar.TypeReg, true},
		{"a negated set", []PathFilter{{Pattern: "/etc/x[!0-9]"}}, "/etc/x7", tar.TypeReg, false},
		{"an escaped star is a star", []PathFilter{{Pattern: `/etc/a\*`}}, "/etc/ab", tar.TypeReg, false},
		{"an escaped star matches one", []PathFilter{{Pattern: `/etc/a\*`}}, "/etc/a*", tar.TypeReg, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Excluded(tc.filters, tc.path, tc.typ); got != tc.want {
				t.Errorf("Excluded(%s, type %q) = %v, want %v", tc.path, tc.typ, got, tc.want)
			}
		})
	}
}

func TestFixedPart(t *testing.T) {
	for in, want := range map[string]string{
		"/usr/share/doc/*/copyright":     "/usr/share/doc",
		"/usr/share/locale/locale.alias": "/usr/share/locale/locale.alias",
		"/usr/share/locale/en*":          "/usr/share/locale/en",
		"/usr/share/foo//":               "/usr/share/foo",
		`/a\*b`:                          "/a",
		"/x?y":                           "/x",
		"/x[ab]":                         "/x",
	} {
		if got := fixedPart(in); got != want {
			t.Errorf("fixedPart(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestBuildSlim: a slim root leaves the filtered files out of the tree
// but in the package's .list (as dpkg does), keeps copyright files and
// the directories they need, and carries the filters and the man-db
// answer to the node.
func TestBuildSlim(t *testing.T) {
	dir := t.TempDir()
	p, sum := makeDeb(t, dir, "tool", "1.0-1", nil, entries(
		"./", "./usr/", "./usr/bin/", "./usr/bin/tool",
		"./usr/share/", "./usr/share/doc/", "./usr/share/doc/tool/",
		"./usr/share/doc/tool/copyright", "./usr/share/doc/tool/changelog.gz", "./usr/share/doc/tool-data -> tool",
		"./usr/share/man/", "./usr/share/man/man1/", "./usr/share/man/man1/tool.1.gz",
		"./usr/share/locale/", "./usr/share/locale/de/", "./usr/share/locale/de/LC_MESSAGES/", "./usr/share/locale/de/LC_MESSAGES/tool.mo",
		"./usr/share/locale/en_GB/", "./usr/share/locale/en_GB/LC_MESSAGES/", "./usr/share/locale/en_GB/LC_MESSAGES/tool.mo",
	))
	debs := []Deb{{Pkg: &Pkg{Name: "tool", Version: "1.0-1", Arch: "arm64", SHA256: sum}, Path: p}}
	full, err := Build(debs, Options{Suite: "bookworm", Epoch: time.Unix(0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	slim, err := Build(debs, Options{Suite: "bookworm", Epoch: time.Unix(0, 0), Slim: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path       string
		full, slim bool
	}{
		{"usr/bin/tool", true, true},
		{"usr/share/doc/tool/copyright", true, true},
		{"usr/share/doc/tool-data", true, true},
		{"usr/share/doc/tool/changelog.gz", true, false},
		{"usr/share/man", true, true},
		{"usr/share/man/man1", true, false},
		{"usr/share/locale/de", true, false},
		{"usr/share/locale/en_GB/LC_MESSAGES/tool.mo", true, true},
		{SlimConfig, false, true},
		{stateDir + "/debconf-selections", false, true},
	} {
		if _, ok := full.Lookup(tc.path); ok != tc.full {
			t.Errorf("full root has %s: %v, want %v", tc.path, ok, tc.full)
		}
		if _, ok := slim.Lookup(tc.path); ok != tc.slim {
			t.Errorf("slim root has %s: %v, want %v", tc.path, ok, tc.slim)
		}
	}
	if a, b := readTree(t, full, "var/lib/dpkg/info/tool.list"), readTree(t, slim, "var/lib/dpkg/info/tool.list"); a != b || !strings.Contains(b, "/usr/share/man/man1/tool.1.gz\n") {
		t.Errorf("slim tool.list differs from the full one:\n%s\nfull:\n%s", b, a)
	}
	cfg := readTree(t, slim, SlimConfig)
	if !strings.Contains(cfg, "\npath-exclude /usr/share/doc/*\n") || !strings.HasSuffix(cfg, "path-include /usr/share/locale/en*\n") ||
		strings.Index(cfg, "path-exclude /usr/share/doc/*") > strings.Index(cfg, "path-include /usr/share/doc/*/copyright") {
		t.Errorf("%s:\n%s", SlimConfig, cfg)
	}
	if got := readTree(t, slim, stateDir+"/debconf-selections"); got != "man-db man-db/auto-update boolean false\n" {
		t.Errorf("debconf-selections = %q", got)
	}
	if !strings.Contains(readTree(t, slim, HookPath), `debconf-set-selections "$state/debconf-selections"`) {
		t.Error("the hook does not give debconf the answers")
	}
	if err := slim.Validate(); err != nil {
		t.Error(err)
	}
}

// entries lists archive entries by name: "d/" is a directory, "l -> t"
// a symlink to t, anything else a file holding its own name.
func entries(names ...string) []entry {
	var out []entry
	for _, n := range names {
		name, target, link := strings.Cut(n, " -> ")
		switch {
		case link:
			out = append(out, entry{name: name, link: target})
		case strings.HasSuffix(n, "/"):
			out = append(out, entry{name: n, dir: true, mode: 0o755})
		default:
			out = append(out, entry{name: n, data: n, mode: 0o644})
		}
	}
	return out
}
