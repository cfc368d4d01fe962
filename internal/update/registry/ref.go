package registry

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
)

// Ref names a manifest in a registry: Host[:port]/Repo with a Tag, a
// Digest, or both (the digest then decides).
type Ref struct {
	Host   string // host or host:port, as the URL takes it
	Repo   string // path components, e.g. fleet/odroid-c2
	Tag    string
	Digest string // "sha256:" and 64 lowercase hex digits
}

// Docker's grammar (distribution/reference), which every registry
// enforces: checking here gives a clear error before any request.
var (
	componentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	tagRE       = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	digestRE    = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	hostnameRE  = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$`)
)

// maxNameLen is docker's limit on host/repo.
const maxNameLen = 255

// ParseRef parses host[:port]/repo/path[:tag][@sha256:hex]. As in docker,
// the first component is the registry host when it has a '.' or ':' or
// is localhost; unlike docker there is no default registry (a node must
// never guess where its root comes from), so it must be one. No tag and
// no digest means the tag "latest".
func ParseRef(s string) (Ref, error) {
	var r Ref
	bad := func(why string) (Ref, error) {
		return Ref{}, fmt.Errorf("registry reference %q: %s (want host[:port]/repo[:tag] or host[:port]/repo@sha256:...)", s, why)
	}
	rest := s
	if i := strings.IndexByte(rest, '@'); i >= 0 {
		r.Digest = rest[i+1:]
		rest = rest[:i]
		if !digestRE.MatchString(r.Digest) {
			return bad("the digest is not sha256: and 64 lowercase hex digits")
		}
	}
	host, path, ok := strings.Cut(rest, "/")
	if !ok || !(strings.ContainsAny(host, ".:") || host == "localhost") {
		return bad("it does not start with a registry host (one with a '.' or a port, or localhost)")
	}
	// A tag follows the last ':' after the last '/' (a ':' before it is
	// the host's port).
	if i := strings.LastIndexByte(path, ':'); i >= 0 {
		r.Tag = path[i+1:]
		path = path[:i]
		if !tagRE.MatchString(r.Tag) {
			return bad("the tag must be 1 to 128 of A-Z a-z 0-9 _ . - and not start with . or -")
		}
	}
	if err := checkHost(host); err != nil {
		return bad(err.Error())
	}
	for _, c := range strings.Split(path, "/") {
		if !componentRE.MatchString(c) {
			return bad(fmt.Sprintf("repository component %q: lowercase letters and digits, separated by . _ __ or -", c))
		}
	}
	if len(host)+1+len(path) > maxNameLen {
		return bad(fmt.Sprintf("the name is longer than %d characters", maxNameLen))
	}
	r.Host, r.Repo = host, path
	if r.Tag == "" && r.Digest == "" {
		r.Tag = "latest"
	}
	return r, nil
}

// checkHost accepts a host name, an IPv4 address or a bracketed IPv6
// address, each with an optional port.
func checkHost(h string) error {
	name, port := h, ""
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return fmt.Errorf("host %q: unclosed [", h)
		}
		name, port = h[1:end], h[end+1:]
		if ip := net.ParseIP(name); ip == nil || ip.To4() != nil {
			return fmt.Errorf("host %q: not an IPv6 address in brackets", h)
		}
		if port != "" && port[0] != ':' {
			return fmt.Errorf("host %q: junk after ]", h)
		}
		port = strings.TrimPrefix(port, ":")
	} else if i := strings.IndexByte(h, ':'); i >= 0 {
		name, port = h[:i], h[i+1:]
		if !hostnameRE.MatchString(name) {
			return fmt.Errorf("host %q is not a host name or address", h)
		}
	} else if !hostnameRE.MatchString(name) {
		return fmt.Errorf("host %q is not a host name or address", h)
	}
	if port != "" || strings.HasSuffix(h, ":") {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '0' {
			return fmt.Errorf("host %q: port must be 1 to 65535", h)
		}
	}
	return nil
}

// String gives the reference back in the form ParseRef reads.
func (r Ref) String() string {
	s := r.Host + "/" + r.Repo
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest
	}
	return s
}

// reference is what goes after /manifests/: the digest when there is
// one (what is asked for exactly), else the tag.
func (r Ref) reference() string {
	if r.Digest != "" {
		return r.Digest
	}
	return r.Tag
}

// Loopback says whether the host is this machine (127.0.0.0/8, ::1,
// localhost): a registry there may be spoken to over plain HTTP, no
// traffic leaves the machine.
func (r Ref) Loopback() bool {
	name := r.Host
	if h, _, err := net.SplitHostPort(r.Host); err == nil {
		name = h
	}
	name = strings.Trim(name, "[]")
	if name == "localhost" {
		return true
	}
	ip := net.ParseIP(name)
	return ip != nil && ip.IsLoopback()
}
