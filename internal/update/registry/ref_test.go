package registry

import (
	"strings"
	"testing"
)

func TestParseRef(t *testing.T) {
	const dg = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, c := range []struct {
		in   string
		want Ref
		err  string // in the error; "" for success
		loop bool
	}{
		{in: "reg.example/fleet/c2:v2", want: Ref{Host: "reg.example", Repo: "fleet/c2", Tag: "v2"}},
		{in: "reg.example/fleet/c2", want: Ref{Host: "reg.example", Repo: "fleet/c2", Tag: "latest"}},
		{in: "localhost/x", want: Ref{Host: "localhost", Repo: "x", Tag: "latest"}, loop: true},
		{in: "127.0.0.1:5000/a/b/c:1.0-rc_1", want: Ref{Host: "127.0.0.1:5000", Repo: "a/b/c", Tag: "1.0-rc_1"}, loop: true},
		{in: "127.9.9.9:5000/a:x", want: Ref{Host: "127.9.9.9:5000", Repo: "a", Tag: "x"}, loop: true},
		{in: "[::1]:5000/a@" + dg, want: Ref{Host: "[::1]:5000", Repo: "a", Digest: dg}, loop: true},
		{in: "[2001:db8::1]/a", want: Ref{Host: "[2001:db8::1]", Repo: "a", Tag: "latest"}},
		{in: "reg.example:443/a.b__c--d/e:t@" + dg, want: Ref{Host: "reg.example:443", Repo: "a.b__c--d/e", Tag: "t", Digest: dg}},
		{in: "localhost.evil.example/a", want: Ref{Host: "localhost.evil.example", Repo: "a", Tag: "latest"}},

		{in: "", err: "registry host"},
		{in: "fleet/c2:v2", err: "registry host"}, // docker.io in docker: never guessed here
		{in: "ubuntu", err: "registry host"},
		{in: "reg.example", err: "registry host"},
		{in: "reg.example/", err: "repository component"},
		{in: "reg.example/Fleet", err: "repository component"},
		{in: "reg.example/a//b", err: "repository component"},
		{in: "reg.example/a/../b", err: "repository component"},
		{in: "reg.example/a/-b", err: "repository component"},
		{in: "reg.example/a%2fb", err: "repository component"},
		{in: "reg.example/a?x=1", err: "repository component"},
		{in: "reg.example/a#frag", err: "repository component"},
		{in: "reg.example/a b", err: "repository component"},
		{in: "reg.example/a:", err: "tag"},
		{in: "reg.example/a:.x", err: "tag"},
		{in: "reg.example/a:" + strings.Repeat("t", 129), err: "tag"},
		{in: "reg.example/a:t\n", err: "tag"},
		{in: "reg.example/a@sha256:abc", err: "digest"},
		{in: "reg.example/a@sha512:" + strings.Repeat("0", 128), err: "digest"},
		{in: "reg.example/a@" + strings.ToUpper(dg), err: "digest"},
		{in: "reg.example/a@" + dg + "@" + dg, err: "digest"},
		{in: "reg.example:0/a", err: "port"},
		{in: "reg.example:65536/a", err: "port"},
		{in: "reg.example:/a", err: "port"},
		{in: "reg.example:5000:1/a", err: "port"},
		{in: "user@reg.example/a", err: "digest"},
		{in: "-reg.example/a", err: "host"},
		{in: "reg..example/a", err: "host"},
		{in: "[::1/a", err: "unclosed"},
		{in: "[127.0.0.1]:5000/a", err: "IPv6"},
		{in: "[::1]x/a", err: "junk"},
		{in: "reg.example/" + strings.Repeat("a", 250), err: "longer"},
		{in: "http://reg.example/a", err: "host"},
	} {
		got, err := ParseRef(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseRef(%q) = %+v, %v; want an error saying %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseRef(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
			continue
		}
		if got.Loopback() != c.loop {
			t.Errorf("%q: Loopback %v, want %v", c.in, got.Loopback(), c.loop)
		}
		// String gives back what ParseRef reads to the same.
		if again, err := ParseRef(got.String()); err != nil || again != got {
			t.Errorf("%q: ParseRef(String()) = %+v, %v", c.in, again, err)
		}
	}
}

func TestRepoURL(t *testing.T) {
	for _, c := range []struct {
		ref   string
		plain bool
		want  string
	}{
		{"reg.example/a:v", false, "https://reg.example/v2/a"},
		{"reg.example/a:v", true, "http://reg.example/v2/a"},
		{"127.0.0.1:5000/a/b:v", false, "http://127.0.0.1:5000/v2/a/b"},
		{"localhost:5000/a:v", false, "http://localhost:5000/v2/a"},
		{"[::1]:5000/a:v", false, "http://[::1]:5000/v2/a"},
		{"10.0.0.1:5000/a:v", false, "https://10.0.0.1:5000/v2/a"},
	} {
		r, err := ParseRef(c.ref)
		if err != nil {
			t.Fatal(err)
		}
		if got := (&Client{PlainHTTP: c.plain}).RepoURL(r); got != c.want {
			t.Errorf("%s (plain %v): %s, want %s", c.ref, c.plain, got, c.want)
		}
	}
}

func TestParseChallenge(t *testing.T) {
	for _, c := range []struct {
		in     string
		scheme string
		params map[string]string
	}{
		{`Bearer realm="https://auth.example/token",service="registry.example",scope="repository:fleet/c2:pull,push"`, "bearer",
			map[string]string{"realm": "https://auth.example/token", "service": "registry.example", "scope": "repository:fleet/c2:pull,push"}},
		{`Basic realm="registrytest"`, "basic", map[string]string{"realm": "registrytest"}},
		{`bearer realm=https://a/t, service=s`, "bearer", map[string]string{"realm": "https://a/t", "service": "s"}},
		{`Bearer realm="a\"b",x`, "bearer", map[string]string{"realm": `a"b`}},
		{`Bearer realm="unterminated`, "bearer", map[string]string{"realm": "unterminated"}},
		{``, "", map[string]string{}},
	} {
		scheme, params := parseChallenge(c.in)
		if scheme != c.scheme || len(params) != len(c.params) {
			t.Errorf("%q: %q %q, want %q %q", c.in, scheme, params, c.scheme, c.params)
			continue
		}
		for k, v := range c.params {
			if params[k] != v {
				t.Errorf("%q: %s = %q, want %q", c.in, k, params[k], v)
			}
		}
	}
}
