package update

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
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
	m, _, err := verifyDoc[Manifest](bundleDoc, manifest, sig, keys)
	return m, err
}

// docKind names a kind of signed document in verifyDoc's errors.
type docKind struct {
	invalid       error  // what every error wraps: ErrInvalid, ErrInvalidNetboot
	name, sigName string // the document's file and its signature's
	what          string // what was changed or signed by another key
	upgrade       string // what to do about a newer format
	max           int    // bytes
}

var bundleDoc = docKind{ErrInvalid, ManifestFile, SignatureFile, "the bundle", "update the node first", MaxManifestSize}

// verifyDoc is the one check of every signed document a node acts on
// (bundle manifests, channels, netboot trees): at most d.max bytes,
// signed by one of keys (CheckSignature, whose key it returns), and only
// then parsed, accepted only in the exact form T's Marshal writes
// (parseExact).
func verifyDoc[T interface{ Marshal() ([]byte, error) }](d docKind, doc, sig []byte, keys []PublicKey) (T, PublicKey, error) {
	var zero T
	if len(keys) == 0 {
		return zero, PublicKey{}, fmt.Errorf("no trusted keys to verify %s with", d.what)
	}
	if len(doc) > d.max {
		return zero, PublicKey{}, fmt.Errorf("%w: %s is %d bytes, more than %d", d.invalid, d.name, len(doc), d.max)
	}
	k, err := CheckSignature(doc, sig, keys, d.invalid, d.name, d.sigName, d.what)
	if err != nil {
		return zero, PublicKey{}, err
	}
	v, err := parseExact[T](doc, d.invalid, d.name, d.upgrade)
	return v, k, err
}

// decodeSignature decodes what Sign returns (a trailing newline is
// optional): the raw ed25519 signature, or false.
func decodeSignature(sig []byte) ([]byte, bool) {
	raw, err := base64.StdEncoding.Strict().DecodeString(string(bytes.TrimSuffix(sig, []byte("\n"))))
	return raw, err == nil && len(raw) == ed25519.SignatureSize
}

// signedBy returns the key of keys that raw is a signature of data by.
func signedBy(data, raw []byte, keys []PublicKey) (PublicKey, bool) {
	for _, k := range keys {
		// ed25519.Verify panics on a key of the wrong size.
		if len(k.Key) == ed25519.PublicKeySize && ed25519.Verify(k.Key, data, raw) {
			return k, true
		}
	}
	return PublicKey{}, false
}

// CheckSignature checks that sig (what Sign returned) is a signature of
// doc by one of keys, and returns that key: the check every signed
// document (a bundle's manifest, a netboot tree's images.json) shares.
// docName, sigName and what name them in the error, which wraps
// invalid (ErrInvalid, ErrInvalidNetboot) and names the trusted keys, so a node's console says which
// keys it wanted.
func CheckSignature(doc, sig []byte, keys []PublicKey, invalid error, docName, sigName, what string) (PublicKey, error) {
	raw, ok := decodeSignature(sig)
	if !ok {
		return PublicKey{}, fmt.Errorf("%w: %s: want base64 of a %d-byte ed25519 signature and a newline", invalid, sigName, ed25519.SignatureSize)
	}
	if k, ok := signedBy(doc, raw, keys); ok {
		return k, nil
	}
	var names []string
	for _, k := range keys {
		names = append(names, fmt.Sprintf("%q", k.Comment))
	}
	return PublicKey{}, fmt.Errorf("%w: %s is not a signature of %s by any of the %d trusted keys (%s): %s was changed or signed with another key",
		invalid, sigName, docName, len(keys), strings.Join(names, ", "), what)
}
