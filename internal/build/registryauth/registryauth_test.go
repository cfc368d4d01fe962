package registryauth

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/update/registry"
	"github.com/mkimage/mkimage/internal/update/registry/registrytest"
)

// fakeHelper puts docker-credential-NAME on PATH: it answers get for
// known.example:5000 with user "helper-user", says "credentials not
// found" for any other server, and records what it read on stdin.
func fakeHelper(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	seen := filepath.Join(dir, "stdin")
	script := `#!/bin/sh
[ "$1" = get ] || { echo "unexpected $*" >&2; exit 2; }
server=$(cat)
printf '%s\n' "$server" >> ` + seen + `
case "$server" in
known.example:5000) echo '{"ServerURL":"known.example:5000","Username":"helper-user","Secret":"helper-secret"}' ;;
broken.example) echo 'not json' ;;
*) echo "credentials not found in native keychain"; exit 1 ;;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "docker-credential-"+name), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return seen
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestDocker(t *testing.T) {
	seen := fakeHelper(t, "fake")
	for _, c := range []struct {
		name, config, host string
		user, secret, err  string
	}{
		{"auth", `{"auths":{"reg.example":{"auth":"` + b64("alice:pa:ss") + `"}}}`, "reg.example", "alice", "pa:ss", ""},
		{"auth with scheme and path", `{"auths":{"https://reg.example:5000/v1/":{"auth":"` + b64("bob:x") + `"}}}`, "reg.example:5000", "bob", "x", ""},
		{"username and password", `{"auths":{"reg.example":{"username":"u","password":"p"}}}`, "reg.example", "u", "p", ""},
		{"other host is anonymous", `{"auths":{"reg.example":{"auth":"` + b64("a:b") + `"}}}`, "other.example", "", "", ""},
		{"credHelpers", `{"credHelpers":{"known.example:5000":"fake"}}`, "known.example:5000", "helper-user", "helper-secret", ""},
		{"credsStore not found falls back to auths", `{"credsStore":"fake","auths":{"reg.example":{"auth":"` + b64("a:b") + `"}}}`, "reg.example", "a", "b", ""},
		{"credsStore found", `{"credsStore":"fake"}`, "known.example:5000", "helper-user", "helper-secret", ""},
		{"helper answers junk", `{"credHelpers":{"broken.example":"fake"}}`, "broken.example", "", "", "not JSON"},
		{"helper missing", `{"credHelpers":{"reg.example":"nosuchhelper"}}`, "reg.example", "", "", "docker-credential-nosuchhelper"},
		{"auth not base64", `{"auths":{"reg.example":{"auth":"%%%"}}}`, "reg.example", "", "", "not base64"},
		{"auth without colon", `{"auths":{"reg.example":{"auth":"` + b64("nocolon") + `"}}}`, "reg.example", "", "", "user:secret"},
		{"identity token", `{"auths":{"reg.example":{"identitytoken":"tok"}}}`, "reg.example", "", "", "identity token"},
	} {
		t.Run(c.name, func(t *testing.T) {
			creds, err := Docker(writeConfig(t, c.config))
			if err != nil {
				t.Fatal(err)
			}
			u, s, err := creds(c.host)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Errorf("error %v, want one saying %q", err, c.err)
				}
				return
			}
			if err != nil || u != c.user || s != c.secret {
				t.Errorf("got %q, %q, %v; want %q, %q", u, s, err, c.user, c.secret)
			}
		})
	}
	// The helper is given the server alone on stdin, as docker does.
	if b, _ := os.ReadFile(seen); !strings.Contains(string(b), "known.example:5000\n") {
		t.Errorf("helper stdin: %q", b)
	}

	if _, err := Docker(writeConfig(t, `{"auths":`)); err == nil || !strings.Contains(err.Error(), "--docker-config") {
		t.Errorf("broken config: %v", err)
	}
	if _, err := Docker(filepath.Join(t.TempDir(), "none.json")); err == nil {
		t.Error("a --docker-config that does not exist: no error")
	}
	// No default config at all: anonymous.
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	creds, err := Docker("")
	if err != nil {
		t.Fatal(err)
	}
	if u, s, err := creds("reg.example"); u != "" || s != "" || err != nil {
		t.Errorf("no config: %q %q %v", u, s, err)
	}
}

// TestBasicRegistry: a real registry with htpasswd logins: the login
// docker login would have written lets a blob be pushed and read; no
// login, or a wrong one, is refused with what to do.
func TestBasicRegistry(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{Users: []string{registrytest.HTPasswd}})
	ref, err := registry.ParseRef(reg.Host() + "/fleet/node:v1")
	if err != nil {
		t.Fatal(err)
	}
	blob := []byte("a blob")
	d := registry.Descriptor{Digest: registry.DigestOf(blob), Size: int64(len(blob))}
	open := func() (r io.ReadCloser, err error) { return io.NopCloser(bytes.NewReader(blob)), nil }
	ctx := context.Background()

	for _, c := range []struct{ name, config, err string }{
		{"anonymous", `{}`, "docker login"},
		{"wrong password", `{"auths":{"` + reg.Host() + `":{"auth":"` + b64(registrytest.User+":wrong") + `"}}}`, "401 again"},
	} {
		creds, err := Docker(writeConfig(t, c.config))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := registry.New(creds, nil, false).PushBlob(ctx, ref, d, open); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.err)
		}
	}
	creds, err := Docker(writeConfig(t, `{"auths":{"`+reg.Host()+`":{"auth":"`+b64(registrytest.User+":"+registrytest.Password)+`"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	c := registry.New(creds, nil, false)
	if pushed, err := c.PushBlob(ctx, ref, d, open); err != nil || !pushed {
		t.Fatalf("push with the login: %v, %v", pushed, err)
	}
	got, err := c.GetBlob(ctx, ref, d, 100)
	if err != nil || !bytes.Equal(got, blob) {
		t.Errorf("read back: %q, %v", got, err)
	}
}
