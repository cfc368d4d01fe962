package update

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
)

// Sign returns the content of manifest.sig for manifest's exact bytes
// (or a status report's signature for its body): the base64 of the
// ed25519 signature and a newline.
func Sign(manifest []byte, k PrivateKey) []byte {
	sig := ed25519.Sign(k.Key, manifest)
	return []byte(base64.StdEncoding.EncodeToString(sig) + "\n")
}

// Verify checks that sig (manifest.sig's content) is a signature of
// manifest by one of keys, and only then parses the manifest and checks
// every field. Any failure wraps ErrInvalid.
func Verify(manifest, sig []byte, keys []PublicKey) (Manifest, error) {
	if err := verifySigned(ManifestFile, SignatureFile, manifest, sig, MaxManifestSize, keys); err != nil {
		return Manifest{}, err
	}
	return parseManifest(manifest)
}

// verifySigned checks that sig is Sign's signature of doc (at most max
// bytes; named name, its signature sigName in errors) by one of keys:
// the one check of every signed document a node acts on (bundle
// manifests, channels). Any failure wraps ErrInvalid.
func verifySigned(name, sigName string, doc, sig []byte, max int, keys []PublicKey) error {
	if len(keys) == 0 {
		return fmt.Errorf("no trusted keys to verify %s with", name)
	}
	if len(doc) > max {
		return fmt.Errorf("%w: %s is %d bytes, more than %d", ErrInvalid, name, len(doc), max)
	}
	raw, ok := decodeSignature(sig)
	if !ok {
		return fmt.Errorf("%w: %s: want base64 of a %d-byte ed25519 signature and a newline", ErrInvalid, sigName, ed25519.SignatureSize)
	}
	if !signedBy(doc, raw, keys) {
		var names []string
		for _, k := range keys {
			names = append(names, fmt.Sprintf("%q", k.Comment))
		}
		return fmt.Errorf("%w: %s is not a signature of %s by any of the %d trusted keys (%s): it was changed or signed with another key",
			ErrInvalid, sigName, name, len(keys), strings.Join(names, ", "))
	}
	return nil
}

// parseCanonical reads a signed JSON document (whose signature is
// already checked) into a T and accepts it only if marshal makes exactly
// the same bytes of the result: no unknown or duplicate fields, no other
// spelling or order, so a node acts on precisely what was signed,
// whatever quirks a JSON decoder has. The "format" field is read first,
// so a newer document is named as such rather than as one with unknown
// fields. Errors wrap ErrInvalid.
func parseCanonical[T any](name string, b []byte, format int, marshal func(T) ([]byte, error)) (T, error) {
	var v, zero T
	var f struct {
		Format int `json:"format"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return zero, fmt.Errorf("%w: %s: %w", ErrInvalid, name, err)
	}
	if f.Format != format {
		return zero, fmt.Errorf("%w: %s: format %d; this mkimage reads format %d (update the node first)", ErrInvalid, name, f.Format, format)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&v); err != nil {
		return zero, fmt.Errorf("%w: %s: %w", ErrInvalid, name, err)
	}
	again, err := marshal(v) // validates
	if err != nil {
		return zero, err
	}
	if !bytes.Equal(again, b) {
		return zero, fmt.Errorf("%w: %s is not in the form mkimage writes (extra data, duplicate fields or other spelling)", ErrInvalid, name)
	}
	return v, nil
}

// decodeSignature decodes what Sign returns (a trailing newline is
// optional): the raw ed25519 signature, or false.
func decodeSignature(sig []byte) ([]byte, bool) {
	raw, err := base64.StdEncoding.Strict().DecodeString(string(bytes.TrimSuffix(sig, []byte("\n"))))
	return raw, err == nil && len(raw) == ed25519.SignatureSize
}

// signedBy reports whether raw is a signature of data by one of keys.
func signedBy(data, raw []byte, keys []PublicKey) bool {
	for _, k := range keys {
		// ed25519.Verify panics on a key of the wrong size.
		if len(k.Key) == ed25519.PublicKeySize && ed25519.Verify(k.Key, data, raw) {
			return true
		}
	}
	return false
}
