package debroot

import (
	"strings"
	"testing"
)

// fakeIndex is a small Packages index: an Essential base, alternatives,
// a virtual package, a versioned Provides, :any, and broken entries.
const fakeIndex = `Package: libc6
Version: 2.36-9
Architecture: arm64
Multi-Arch: same
Priority: optional
Depends: libgcc-s1
Filename: pool/l/libc6.deb
SHA256: aa

Package: libgcc-s1
Version: 12.2-14
Architecture: arm64
Priority: optional
Depends: libc6 (>= 2.35)

Package: bash
Version: 5.2-2
Architecture: arm64
Essential: yes
Priority: required
Pre-Depends: libc6 (>= 2.36)
Depends: base-files (>= 2.1.12), debianutils (>= 5.6-0.1)

Package: base-files
Version: 12.4
Architecture: arm64
Priority: required
Essential: yes

Package: debianutils
Version: 5.7-0.5
Architecture: arm64
Priority: required
Essential: yes

Package: init-system-helpers
Version: 1.65
Architecture: all
Priority: optional
Depends: usrmerge | usr-is-merged

Package: usrmerge
Version: 37
Architecture: all
Priority: optional
Depends: perl

Package: usr-is-merged
Version: 37
Architecture: all
Priority: optional

Package: perl
Version: 5.36
Architecture: arm64
Multi-Arch: allowed
Priority: standard

Package: mailer
Version: 1
Architecture: arm64
Priority: optional
Depends: mail-transport-agent, perl:any, awk

Package: exim4
Version: 4.96
Architecture: arm64
Priority: optional
Provides: mail-transport-agent

Package: postfix
Version: 3.7
Architecture: arm64
Priority: extra
Provides: mail-transport-agent

Package: mawk
Version: 1.3.4
Architecture: arm64
Priority: required
Provides: awk

Package: gawk
Version: 5.2
Architecture: arm64
Priority: optional
Provides: awk

Package: wants-new-libc
Version: 1
Architecture: arm64
Depends: libc6 (>= 3.0)

Package: wants-virtual-version
Version: 1
Architecture: arm64
Depends: awk (>= 1)

Package: wants-versioned-provide
Version: 1
Architecture: arm64
Depends: libfoo-abi (= 2)

Package: libfoo
Version: 2.1
Architecture: arm64
Provides: libfoo-abi (= 2)

Package: wants-any
Version: 1
Architecture: arm64
Depends: bash:any

Package: wants-missing
Version: 1
Architecture: arm64
Depends: gone-package | also-gone

Package: on-top
Version: 1
Architecture: arm64
Depends: wants-missing

Package: foreign-arch
Version: 1
Architecture: amd64

Package: bash
Version: 5.1-1
Architecture: arm64
Essential: yes
Priority: required
`

func loadFake(t *testing.T) *Index {
	t.Helper()
	ix := NewIndex()
	if err := ix.Add("fake_Packages", strings.NewReader(fakeIndex)); err != nil {
		t.Fatal(err)
	}
	return ix
}

func names(ps []*Pkg) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

func TestIndexCandidate(t *testing.T) {
	ix := loadFake(t)
	p, ok := ix.Get("bash")
	if !ok || p.Version != "5.2-2" {
		t.Fatalf("bash candidate = %+v, want the higher 5.2-2", p)
	}
	if got := strings.Join(BaseNames(ix, "arm64"), " "); got != "base-files bash debianutils mawk" {
		t.Errorf("BaseNames = %s", got)
	}
}

func TestResolve(t *testing.T) {
	ix := loadFake(t)
	for _, c := range []struct {
		name  string
		roots []string
		want  []string // in the set
		not   []string // not in the set
		first []string // pairs: a before b
	}{
		{"pre-depends and depends, dependencies first", []string{"bash"},
			[]string{"bash", "libc6", "libgcc-s1", "base-files", "debianutils"}, nil,
			[]string{"libc6", "bash", "base-files", "bash"}},
		{"first satisfiable alternative", []string{"init-system-helpers"},
			[]string{"usrmerge", "perl"}, []string{"usr-is-merged"}, nil},
		{"an alternative already chosen wins", []string{"usr-is-merged", "init-system-helpers"},
			[]string{"usr-is-merged"}, []string{"usrmerge", "perl"}, nil},
		{"virtual: provider by priority, chosen provider wins, :any on Multi-Arch allowed", []string{"mawk", "mailer"},
			[]string{"exim4", "mawk", "perl"}, []string{"postfix", "gawk"}, nil},
		{"versioned provides", []string{"wants-versioned-provide"}, []string{"libfoo"}, nil, nil},
		{"requested virtual name", []string{"mail-transport-agent"}, []string{"exim4"}, nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Resolve(ix, "arm64", c.roots...)
			if err != nil {
				t.Fatal(err)
			}
			pos := map[string]int{}
			for i, n := range names(got) {
				if _, dup := pos[n]; dup {
					t.Errorf("%s twice", n)
				}
				pos[n] = i
			}
			for _, w := range c.want {
				if _, ok := pos[w]; !ok {
					t.Errorf("%s missing from %v", w, names(got))
				}
			}
			for _, w := range c.not {
				if _, ok := pos[w]; ok {
					t.Errorf("%s should not be in %v", w, names(got))
				}
			}
			for i := 0; i+1 < len(c.first); i += 2 {
				if pos[c.first[i]] > pos[c.first[i+1]] {
					t.Errorf("%s after %s in %v", c.first[i], c.first[i+1], names(got))
				}
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	ix := loadFake(t)
	for _, c := range []struct {
		roots []string
		want  []string
	}{
		{[]string{"no-such-thing"}, []string{`package "no-such-thing" is not in the arm64 package index`, "fake_Packages"}},
		{[]string{"wants-new-libc"}, []string{"package wants-new-libc 1", `Depends "libc6 (>= 3.0)"`, "libc6 has version 2.36-9"}},
		{[]string{"on-top"}, []string{"package wants-missing 1 (needed by on-top, requested)", "gone-package is not in the index", "also-gone is not in the index"}},
		{[]string{"wants-virtual-version"}, []string{"package wants-virtual-version", "mawk provides awk without a version"}},
		{[]string{"wants-any"}, []string{"package wants-any", "bash is not Multi-Arch: allowed"}},
		{[]string{"foreign-arch"}, []string{`package "foreign-arch": index entry is for architecture amd64`}},
		{[]string{"bash:amd64"}, []string{`package "bash:amd64": architecture amd64 is not arm64`}},
	} {
		_, err := Resolve(ix, "arm64", c.roots...)
		if err == nil {
			t.Errorf("Resolve(%v) succeeded", c.roots)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Resolve(%v): error %q does not say %q", c.roots, err, w)
			}
		}
	}
}

func TestListFiles(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{
		"deb.debian.org_debian_dists_bookworm_main_binary-arm64_Packages.lz4",
		"deb.debian.org_debian_dists_bookworm-updates_main_binary-arm64_Packages.lz4",
		"deb.debian.org_debian-security_dists_bookworm-security_main_binary-arm64_Packages.lz4",
		"deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4",
		"deb.debian.org_debian_dists_trixie_main_binary-arm64_Packages.lz4",
		"deb.debian.org_debian_dists_bookworm_InRelease",
	} {
		writeFile(t, dir+"/"+n, nil)
	}
	got, err := ListFiles(dir, "bookworm", "arm64")
	if err != nil || len(got) != 3 {
		t.Fatalf("ListFiles = %v, %v; want the 3 bookworm arm64 lists", got, err)
	}
	if _, err := ListFiles(dir, "sid", "arm64"); err == nil || !strings.Contains(err.Error(), `suite "sid"`) || !strings.Contains(err.Error(), "trixie") {
		t.Errorf("unknown suite: %v", err)
	}
}

// TestResolveContainer: a container's set is the required one, merged
// /usr and its packages, with systemd-sysv added only when nothing in it
// ships /sbin/init.
func TestResolveContainer(t *testing.T) {
	ix := loadFake(t)
	if err := ix.Add("init_Packages", strings.NewReader(`Package: systemd-sysv
Version: 252
Architecture: arm64
Priority: important

Package: sysvinit-core
Version: 3.06
Architecture: arm64
Priority: optional
`)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		extra    []string
		want     []string
		not      []string
		wantFail string
	}{
		{nil, []string{"bash", "mawk", "usr-is-merged", "systemd-sysv"}, []string{"usrmerge", "perl"}, ""},
		{[]string{"init-system-helpers"}, []string{"init-system-helpers", "usr-is-merged", "systemd-sysv"}, []string{"usrmerge"}, ""},
		{[]string{"sysvinit-core"}, []string{"sysvinit-core"}, []string{"systemd-sysv"}, ""},
		{[]string{"no-such-package"}, nil, nil, `package "no-such-package" is not in the arm64 package index`},
	} {
		got, err := ResolveContainer(ix, "arm64", c.extra...)
		if c.wantFail != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantFail) {
				t.Errorf("%v: %v, want %q", c.extra, err, c.wantFail)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", c.extra, err)
		}
		set := strings.Join(names(got), " ") + " "
		for _, w := range c.want {
			if !strings.Contains(" "+set, " "+w+" ") {
				t.Errorf("%v: %s not in %s", c.extra, w, set)
			}
		}
		for _, w := range c.not {
			if strings.Contains(" "+set, " "+w+" ") {
				t.Errorf("%v: %s in %s", c.extra, w, set)
			}
		}
	}
}
