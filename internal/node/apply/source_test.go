package apply

import (
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/node/netfetch"
	"github.com/mkimage/mkimage/internal/update"
	"github.com/mkimage/mkimage/internal/update/registry"
)

// TestSource: which source each Source form gives, and where it reads a
// payload.
func TestSource(t *testing.T) {
	p := update.Payload{Name: update.RootFull, SHA256: strings.Repeat("a", 64)}
	for _, c := range []struct {
		source, url, err string
	}{
		{"http://build-host:8080/bundles/v2", "http://build-host:8080/bundles/v2/root.full", ""},
		{"https://build-host/v2/", "https://build-host/v2/root.full", ""},
		{"oci://reg.example/fleet/c2:v2", "https://reg.example/v2/fleet/c2/blobs/sha256:" + p.SHA256, ""},
		{"oci://127.0.0.1:5000/fleet/c2:v2", "http://127.0.0.1:5000/v2/fleet/c2/blobs/sha256:" + p.SHA256, ""},
		{"oci+http://10.0.2.2:5000/fleet/c2@sha256:" + strings.Repeat("b", 64), "http://10.0.2.2:5000/v2/fleet/c2/blobs/sha256:" + p.SHA256, ""},
		{"oci://fleet/c2:v2", "", "registry host"},
		{"oci://reg.example/../x", "", "repository component"},
		{"ftp://build-host/v2/", "", "want the http(s)://"},
		{"/srv/bundles/v2", "", "want the http(s)://"},
	} {
		o := Options{Source: c.source, Fetcher: &netfetch.Fetcher{}}
		src, err := o.source()
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: %v, want an error saying %q", c.source, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.source, err)
			continue
		}
		if r, ok := src.(*registrySource); ok {
			r.b = &registry.Bundle{Ref: r.ref} // as manifest() leaves it
		}
		// A registry's payload is the blob of the signed manifest's digest.
		if got := src.url(p); got != c.url {
			t.Errorf("%s: payload at %s, want %s", c.source, got, c.url)
		}
	}
}
