package debroot

import (
	"archive/tar"
	"bytes"
	"strings"

	"github.com/mkimage/mkimage/internal/modalias"
)

// PathFilter is one of dpkg's path filters (dpkg.cfg(5) path-exclude and
// path-include): a glob over the absolute paths of a package's files.
type PathFilter struct {
	Include bool
	Pattern string // "/usr/share/doc/*"
}

// String is the filter as a dpkg.cfg line ("path-exclude /usr/share/doc/*").
func (f PathFilter) String() string {
	if f.Include {
		return "path-include " + f.Pattern
	}
	return "path-exclude " + f.Pattern
}

// SlimFilters are the filters of a slim root (`mkimage build --slim`):
// those of Debian's slim container images (debuerreotype's
// .slimify-excludes and .slimify-includes), keeping English
// translations besides. A server node reads no man pages, info or docs;
// licences stay (every copyright file), as does the C locale, which is
// not under /usr/share/locale.
var SlimFilters = []PathFilter{
	{Pattern: "/usr/share/doc/*"},
	{Pattern: "/usr/share/groff/*"},
	{Pattern: "/usr/share/info/*"},
	{Pattern: "/usr/share/linda/*"},
	{Pattern: "/usr/share/lintian/overrides/*"},
	{Pattern: "/usr/share/locale/*"},
	{Pattern: "/usr/share/man/*"},
	{Include: true, Pattern: "/usr/share/doc/*/copyright"},
	{Include: true, Pattern: "/usr/share/locale/locale.alias"},
	{Include: true, Pattern: "/usr/share/locale/en*"},
}

// SlimConfig is where a slim root keeps its filters, so dpkg applies
// them to every package installed later on the node too.
const SlimConfig = "etc/dpkg/dpkg.cfg.d/mkimage-slim"

// Excluded reports whether dpkg, given filters, leaves out the archive
// entry at p (absolute, "/usr/share/doc/x", no trailing slash) of tar
// type typ, as dpkg's filter_should_skip decides: the last filter whose
// pattern matches p wins, with fnmatch(3) and no flags ('*' matches '/'
// too). A directory or symlink left out comes back when an include
// filter's fixed part (up to its first wildcard, trailing slashes
// dropped) begins p, so what that filter brings back has its parents.
func Excluded(filters []PathFilter, p string, typ byte) bool {
	skip := false
	for _, f := range filters {
		if modalias.Match(f.Pattern, p) {
			skip = !f.Include
		}
	}
	if !skip || typ != tar.TypeDir && typ != tar.TypeSymlink {
		return skip
	}
	for _, f := range filters {
		if f.Include && strings.HasPrefix(p, fixedPart(f.Pattern)) {
			return false
		}
	}
	return true
}

// Keep is filters as a rootfs.TarOptions.Keep: it keeps the entries
// dpkg would unpack (tree paths are relative, dpkg's absolute).
func Keep(filters []PathFilter) func(p string, h *tar.Header) bool {
	return func(p string, h *tar.Header) bool { return !Excluded(filters, "/"+p, h.Typeflag) }
}

// fixedPart is a pattern up to its first wildcard or escape, without
// trailing slashes.
func fixedPart(pattern string) string {
	if i := strings.IndexAny(pattern, `*?[\`); i >= 0 {
		pattern = pattern[:i]
	}
	return strings.TrimRight(pattern, "/")
}

// slimSelections are debconf answers a slim root's first boot gives
// before configuring: man-db (if installed, now or later) never rebuilds
// its database, not at install and not from its trigger at every
// package installed, as Debian's minimal images preseed it.
const slimSelections = "man-db man-db/auto-update boolean false\n"

// dpkgConfig is the dpkg.cfg.d file that keeps filters in force on the
// node, in order (dpkg applies the last match).
func dpkgConfig(filters []PathFilter) []byte {
	var b bytes.Buffer
	b.WriteString("# Written by mkimage --slim: no man pages, info, docs (copyright files\n" +
		"# stay) or translations other than English, as in Debian's slim images.\n" +
		"# dpkg applies these to every package installed later; to get a\n" +
		"# package's files back, remove this file and reinstall the package.\n")
	for _, f := range filters {
		b.WriteString(f.String() + "\n")
	}
	return b.Bytes()
}
