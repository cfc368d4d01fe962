package update

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzVerify feeds Verify hostile manifests and signatures. Each manifest
// is tried twice: with the given signature (which a fuzzer can hardly
// forge, so this covers the signature checks) and signed by a trusted
// key, so the JSON parser and every field check see the input too. No
// input may panic, and whatever is accepted must be valid and be exactly
// what Marshal writes for it.
func FuzzVerify(f *testing.F) {
	key := testKey(9, "fuzz")
	keys := []PublicKey{testKey(1, "other").Public(), key.Public()}
	good, _ := testManifest().Marshal()
	f.Add(good, Sign(good, key))
	f.Add(good, []byte("AAAA\n"))
	f.Add([]byte(`{"format":1}`), []byte{})
	f.Add(bytes.Replace(good, []byte(`"Image"`), []byte(`"../Image"`), 1), Sign(good, key))
	f.Fuzz(func(t *testing.T, manifest, sig []byte) {
		for _, s := range [][]byte{sig, Sign(manifest, key)} {
			m, err := Verify(manifest, s, keys)
			if err != nil {
				continue
			}
			if err := m.Validate(); err != nil {
				t.Fatalf("accepted an invalid manifest: %v", err)
			}
			if again, err := m.Marshal(); err != nil || !bytes.Equal(again, manifest) {
				t.Fatalf("accepted %q, which Marshal writes as %q (%v)", manifest, again, err)
			}
		}
	})
}

// FuzzVerifyChannel feeds VerifyChannel hostile channel files, as they
// come and re-signed by a trusted key (so the parser and the field
// checks see them). Whatever is accepted must be valid and sign back to
// the same bytes.
func FuzzVerifyChannel(f *testing.F) {
	key := testKey(9, "fuzz")
	keys := []PublicKey{key.Public()}
	good, _ := SignChannel(testChannel(), key)
	doc, _ := testChannel().Marshal()
	f.Add(good)
	f.Add(doc)
	f.Add([]byte("{\"format\":1}\nAAAA\n"))
	f.Fuzz(func(t *testing.T, file []byte) {
		for _, in := range [][]byte{file, append(append([]byte{}, file...), Sign(file, key)...)} {
			c, err := VerifyChannel(in, keys)
			if err != nil {
				continue
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("accepted an invalid channel: %v", err)
			}
			again, err := c.Marshal()
			if err != nil || !bytes.HasPrefix(in, again) {
				t.Fatalf("accepted %q, which Marshal writes as %q (%v)", in, again, err)
			}
		}
	})
}

// FuzzVerifyReport feeds VerifyReport what any host that reaches the
// build host's status server can send: a body and the two headers. Each
// body is tried as it comes and signed by a key of the fuzzer's, so the
// JSON parser and the name check see it. Nothing may panic, and an
// accepted report names a node by a name that is safe as a file name and
// came from a body within MaxReportSize.
func FuzzVerifyReport(f *testing.F) {
	key := testKey(7, "node01")
	good, pub, sig, err := SignReport(Report{Node: "node01", Boot: "b"}, key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, pub, sig)
	f.Add([]byte(`{"node":"../../etc/passwd"}`), pub, sig)
	f.Add([]byte(`{"node":"Node01","status":{"versions":[{}]}}`), "x", "AAAA")
	f.Fuzz(func(t *testing.T, body []byte, keyHeader, sigHeader string) {
		signed := string(bytes.TrimSuffix(Sign(body, key), []byte("\n")))
		for _, h := range [][2]string{{keyHeader, sigHeader}, {pub, signed}} {
			r, k, err := VerifyReport(body, h[0], h[1])
			if err != nil {
				continue
			}
			if len(body) > MaxReportSize {
				t.Fatalf("accepted a body of %d bytes", len(body))
			}
			if err := CheckNodeName(r.Node); err != nil || strings.ContainsAny(r.Node, "/\\") {
				t.Fatalf("accepted node name %q: %v", r.Node, err)
			}
			if h[1] == signed && !SameKey(k, key.Public()) {
				t.Fatalf("accepted under key %s, signed by %s", k, key.Public())
			}
		}
	})
}
