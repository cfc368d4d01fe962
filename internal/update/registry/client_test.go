package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mkimage/mkimage/internal/update/registry/registrytest"
)

func blob(s string) (Descriptor, func() (io.ReadCloser, error)) {
	b := []byte(s)
	return Descriptor{Digest: DigestOf(b), Size: int64(len(b))}, func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// TestBearer: a real registry that wants Bearer tokens from a token
// server: anyone may pull, a login may push; a token is fetched once per
// repository and pull or push, not per request.
func TestBearer(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{TokenUsers: map[string]string{registrytest.User: registrytest.Password}})
	ref, err := ParseRef(reg.Host() + "/fleet/node:v1")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var asked atomic.Int32
	login := func(user, secret string) Credentials {
		return func(host string) (string, string, error) {
			asked.Add(1)
			if host != reg.Host() {
				return "", "", fmt.Errorf("asked for %s's login", host)
			}
			return user, secret, nil
		}
	}

	d, open := blob("first")
	if _, err := New(nil, nil, false).PushBlob(ctx, ref, d, open); err == nil || !strings.Contains(err.Error(), "docker login") {
		t.Errorf("anonymous push: %v, want a refusal saying to log in", err)
	}
	if _, err := New(login(registrytest.User, "wrong"), nil, false).PushBlob(ctx, ref, d, open); err == nil || !strings.Contains(err.Error(), "check the login") {
		t.Errorf("push with a wrong password: %v", err)
	}

	c := New(login(registrytest.User, registrytest.Password), nil, false)
	before := reg.TokenRequests()
	asked.Store(0)
	for i := range 3 {
		d, open := blob(fmt.Sprint("blob ", i))
		if pushed, err := c.PushBlob(ctx, ref, d, open); err != nil || !pushed {
			t.Fatalf("push %d: %v %v", i, pushed, err)
		}
	}
	if n := reg.TokenRequests() - before; n != 2 {
		t.Errorf("%d token requests for 3 pushes, want 2 (pull for HEAD, push for the upload)", n)
	}
	if n := asked.Load(); n != 1 {
		t.Errorf("the login was asked for %d times, want once (a credential helper is a process)", n)
	}
	// Anonymous pull of what was pushed.
	d, _ = blob("blob 1")
	if b, err := New(nil, nil, false).GetBlob(ctx, ref, d, 100); err != nil || string(b) != "blob 1" {
		t.Errorf("anonymous pull: %q, %v", b, err)
	}
	if _, err := New(nil, nil, false).GetBlob(ctx, ref, Descriptor{Digest: DigestOf([]byte("absent")), Size: 6}, 100); !errors.Is(err, ErrNotFound) {
		t.Errorf("absent blob: %v, want ErrNotFound", err)
	}
}

// TestTLS: a registry off loopback is spoken to over HTTPS. With the CA
// that signed its certificate a push and a pull go through; a client
// that does not trust it, or speaks plain HTTP to it, is refused and
// says why.
func TestTLS(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{TLS: true})
	ref, err := ParseRef(reg.Host() + "/fleet/node:v1")
	if err != nil {
		t.Fatal(err)
	}
	if ref.Loopback() {
		t.Fatalf("%s counts as loopback: the test would not use HTTPS", ref.Host)
	}
	ctx := context.Background()
	d, open := blob("over tls")
	c := New(nil, reg.Transport(reg.CA), false)
	if u := c.BlobURL(ref, d.Digest); !strings.HasPrefix(u, "https://"+registrytest.TLSName+":") {
		t.Fatalf("blob URL %s, want https", u)
	}
	if pushed, err := c.PushBlob(ctx, ref, d, open); err != nil || !pushed {
		t.Fatalf("push over HTTPS: %v %v", pushed, err)
	}
	if b, err := c.GetBlob(ctx, ref, d, 100); err != nil || string(b) != "over tls" {
		t.Fatalf("pull over HTTPS: %q, %v", b, err)
	}
	if _, err := New(nil, reg.Transport(nil), false).GetBlob(ctx, ref, d, 100); err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Errorf("a client without the CA: %v, want a certificate error", err)
	}
	if _, err := New(nil, reg.Transport(reg.CA), true).GetBlob(ctx, ref, d, 100); err == nil {
		t.Error("plain HTTP to an HTTPS registry worked")
	} else {
		t.Logf("plain HTTP: %v", err)
	}
}

// TestChannel: a channel file published to a tag of the real registry
// reads back byte for byte, moves with the tag, and a reference to
// anything else is refused before its blob is read.
func TestChannel(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ctx := context.Background()
	c := New(nil, nil, false)
	ref, err := ParseRef(reg.Host() + "/fleet/channel:stable")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetChannel(ctx, ref); !errors.Is(err, ErrNotFound) {
		t.Errorf("no channel yet: %v, want ErrNotFound", err)
	}
	for _, file := range []string{"{\"sequence\":1}\nSIG1\n", "{\"sequence\":2}\nSIG2\n"} {
		if err := c.PushChannel(ctx, ref, []byte(file)); err != nil {
			t.Fatal(err)
		}
		if got, err := c.GetChannel(ctx, ref); err != nil || string(got) != file {
			t.Errorf("read back %q, %v; want %q", got, err, file)
		}
	}
	byDigest := ref
	byDigest.Tag = ""
	if err := c.PushChannel(ctx, byDigest, []byte("x")); err == nil {
		t.Error("a channel pushed without a tag")
	}
	// An image under the tag instead: refused as not a channel.
	d, open := blob("layer")
	if _, err := c.PushBlob(ctx, ref, d, open); err != nil {
		t.Fatal(err)
	}
	cfg, openCfg := blob("{}")
	if _, err := c.PushBlob(ctx, ref, cfg, openCfg); err != nil {
		t.Fatal(err)
	}
	cfg.MediaType, d.MediaType = MediaTypeImageConfig, ImageLayerTypes[0]
	img, _ := Manifest{SchemaVersion: 2, MediaType: MediaTypeManifest, Config: cfg, Layers: []Descriptor{d}}.Marshal()
	if _, err := c.PutManifest(ctx, ref, img); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetChannel(ctx, ref); err == nil || !strings.Contains(err.Error(), "not a channel") {
		t.Errorf("an image under the tag: %v, want it refused as not a channel", err)
	}
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in           string
		ref          string
		plain, isOCI bool
		err          bool
	}{
		{in: "oci://reg.example/fleet/ch:stable", ref: "reg.example/fleet/ch:stable", isOCI: true},
		{in: "oci+http://10.0.0.1:5000/ch:lab", ref: "10.0.0.1:5000/ch:lab", plain: true, isOCI: true},
		{in: "http://build-host:8080/channel.json"},
		{in: "oci://", isOCI: true, err: true},
	} {
		r, plain, isOCI, err := ParseURL(tc.in)
		if (err != nil) != tc.err || plain != tc.plain || isOCI != tc.isOCI || (!tc.err && tc.isOCI && r.String() != tc.ref) {
			t.Errorf("%q: %v %v %v %v", tc.in, r, plain, isOCI, err)
		}
	}
}
