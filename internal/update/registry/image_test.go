package registry

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestPickPlatform(t *testing.T) {
	d := func(s string) Descriptor {
		return Descriptor{MediaType: MediaTypeDockerManifest, Digest: DigestOf([]byte(s)), Size: 10}
	}
	ix := func(es ...IndexEntry) []byte {
		b, _ := json.Marshal(Index{SchemaVersion: 2, MediaType: MediaTypeDockerList, Manifests: es})
		return b
	}
	p := func(arch, variant string) *Platform {
		return &Platform{OS: "linux", Architecture: arch, Variant: variant}
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want string // the chosen digest's source, or an error's text
	}{
		{"arm64 v8", ix(IndexEntry{d("amd"), p("amd64", "")}, IndexEntry{d("arm"), p("arm64", "v8")}), "arm"},
		{"arm64 no variant", ix(IndexEntry{d("arm"), p("arm64", "")}), "arm"},
		{"no platform skipped", ix(IndexEntry{Descriptor: d("attestation")}, IndexEntry{d("arm"), p("arm64", "")}), "arm"},
		{"other variant", ix(IndexEntry{d("arm"), p("arm64", "v9")}), "no linux/arm64 manifest (it has linux/arm64/v9)"},
		{"only amd64", ix(IndexEntry{d("amd"), p("amd64", "")}, IndexEntry{d("arm"), &Platform{OS: "windows", Architecture: "arm64"}}), "no linux/arm64 manifest (it has linux/amd64, windows/arm64)"},
		{"nested index", ix(IndexEntry{Descriptor{MediaType: MediaTypeImageIndex, Digest: DigestOf([]byte("x")), Size: 1}, p("arm64", "")}), "is a \"application/vnd.oci.image.index.v1+json\", not an image manifest"},
		{"bad digest", ix(IndexEntry{Descriptor{MediaType: MediaTypeManifest, Digest: "sha256:12", Size: 1}, p("arm64", "")}), "is not sha256"},
		{"junk", []byte(`{"schemaVersion":2}{}`), "data after the JSON object"},
	} {
		e, err := pickPlatform(tc.b, "arm64")
		switch {
		case err != nil && !strings.Contains(err.Error(), tc.want):
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		case err == nil && e.Digest != DigestOf([]byte(tc.want)):
			t.Errorf("%s: chose %s, want %s's", tc.name, e.Digest, tc.want)
		}
	}
}

func TestParseImageManifest(t *testing.T) {
	cfg := Descriptor{MediaType: MediaTypeImageConfig, Digest: DigestOf([]byte("c")), Size: 1}
	layer := Descriptor{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Digest: DigestOf([]byte("l")), Size: 1}
	m := func(f func(*Manifest)) []byte {
		v := Manifest{SchemaVersion: 2, MediaType: MediaTypeManifest, Config: cfg, Layers: []Descriptor{layer}}
		f(&v)
		b, _ := json.Marshal(v)
		return b
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"ok", m(func(*Manifest) {}), ""},
		{"bundle", m(func(v *Manifest) { v.Config.MediaType = MediaTypeConfig }), "is not a container image's"},
		{"foreign layer", m(func(v *Manifest) { v.Layers[0].MediaType = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" }), "layer 0 has media type"},
		{"huge layer", m(func(v *Manifest) { v.Layers[0].Size = MaxLayerSize + 1 }), "layer 0: size"},
		{"no layers", m(func(v *Manifest) { v.Layers = nil }), "0 layers"},
	} {
		_, err := parseImageManifest(tc.b, MediaTypeManifest)
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// FuzzParseImageManifest: a registry (or whoever answers for it) may send
// anything as a container image's manifest. No input panics, and what is
// accepted has a container config and 1 to MaxImageLayers layers of the
// known tar types, each digest sha256 (it goes into a URL path and a
// cache file name) and each size in range.
func FuzzParseImageManifest(f *testing.F) {
	good, _ := json.Marshal(Manifest{SchemaVersion: 2, MediaType: MediaTypeManifest,
		Config: Descriptor{MediaType: MediaTypeImageConfig, Digest: DigestOf([]byte("c")), Size: 1},
		Layers: []Descriptor{{MediaType: ImageLayerTypes[1], Digest: DigestOf([]byte("l")), Size: 1}}})
	f.Add(good, MediaTypeManifest)
	f.Add(good, MediaTypeDockerManifest)
	f.Add([]byte(`{"schemaVersion":2,"layers":[{"digest":"sha256:../../x","size":-1}]}`), MediaTypeManifest)
	f.Fuzz(func(t *testing.T, b []byte, mt string) {
		m, err := parseImageManifest(b, mt)
		if err != nil {
			return
		}
		if m.Config.MediaType != MediaTypeImageConfig && m.Config.MediaType != MediaTypeDockerConfig {
			t.Fatalf("accepted config %+v", m.Config)
		}
		if checkDescriptor(m.Config, MaxImageConfig) != nil || len(m.Layers) == 0 || len(m.Layers) > MaxImageLayers {
			t.Fatalf("accepted config %+v with %d layers", m.Config, len(m.Layers))
		}
		for _, l := range m.Layers {
			if !blobDigestRE.MatchString(l.Digest) || l.Size < 0 || l.Size > MaxLayerSize || !slices.Contains(ImageLayerTypes, l.MediaType) {
				t.Fatalf("accepted layer %+v", l)
			}
		}
	})
}

// FuzzPickPlatform: no index panics pickPlatform, and the entry it
// chooses is a linux/arm64 image manifest (v8 or no variant) with a
// sha256 digest and a size within MaxManifestSize.
func FuzzPickPlatform(f *testing.F) {
	d := Descriptor{MediaType: MediaTypeManifest, Digest: DigestOf([]byte("m")), Size: 10}
	good, _ := json.Marshal(Index{SchemaVersion: 2, MediaType: MediaTypeImageIndex, Manifests: []IndexEntry{
		{d, &Platform{OS: "linux", Architecture: "amd64"}}, {d, &Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}}})
	f.Add(good)
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"platform":null}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := pickPlatform(b, "arm64")
		if err != nil {
			return
		}
		p := e.Platform
		if p == nil || p.OS != "linux" || p.Architecture != "arm64" || (p.Variant != "" && p.Variant != "v8") {
			t.Fatalf("chose %+v", e)
		}
		if (e.MediaType != MediaTypeManifest && e.MediaType != MediaTypeDockerManifest) || checkDescriptor(e.Descriptor, MaxManifestSize) != nil {
			t.Fatalf("chose %+v", e.Descriptor)
		}
	})
}
