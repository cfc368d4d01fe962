package update

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mkimage/mkimage/internal/atomicfile"
)

// Key files are one line of text each:
//
//	mkimage-ed25519-public <base64 of the 32-byte public key> [comment]
//	mkimage-ed25519-private <base64 of the 32-byte seed> [comment]
//
// A public key file may hold several keys, one a line (blank lines and
// lines starting with # are skipped): a node trusts each, so a new
// signing key can be rolled out before the old one is retired.
const (
	publicTag  = "mkimage-ed25519-public"
	privateTag = "mkimage-ed25519-private"
	// maxKeyFile bounds what is read of a key file.
	maxKeyFile = 64 << 10
)

// PublicKey is a key a node trusts.
type PublicKey struct {
	Key     ed25519.PublicKey
	Comment string // who or what the key is for; may be empty
}

// PrivateKey signs bundles.
type PrivateKey struct {
	Key     ed25519.PrivateKey
	Comment string
}

// GenerateKey makes a new signing key from rand (crypto/rand.Reader
// outside tests).
func GenerateKey(rand io.Reader) (PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("generating a key: %w", err)
	}
	return PrivateKey{Key: priv}, nil
}

// Public returns the key's public half, with its comment.
func (k PrivateKey) Public() PublicKey {
	return PublicKey{Key: k.Key.Public().(ed25519.PublicKey), Comment: k.Comment}
}

// String returns the key's line in a public key file, without newline.
func (k PublicKey) String() string {
	return keyLine(publicTag, k.Key, k.Comment)
}

// Marshal returns the private key file's content.
func (k PrivateKey) Marshal() []byte {
	return []byte(keyLine(privateTag, k.Key.Seed(), k.Comment) + "\n")
}

func keyLine(tag string, b []byte, comment string) string {
	s := tag + " " + base64.StdEncoding.EncodeToString(b)
	if comment != "" {
		s += " " + comment
	}
	return s
}

// CheckComment accepts a key comment: printable, one line.
func CheckComment(c string) error {
	if len(c) > 255 || !printable(c) || strings.TrimSpace(c) != c {
		return fmt.Errorf("key comment %q: want up to 255 printable characters, one line, no leading or trailing space", c)
	}
	return nil
}

// parseKeyLine splits "TAG BASE64 [COMMENT]" and decodes a key of n bytes.
func parseKeyLine(line, tag string, n int) ([]byte, string, error) {
	f := strings.SplitN(line, " ", 3)
	if f[0] != tag {
		return nil, "", fmt.Errorf("starts with %q, want %q", f[0], tag)
	}
	if len(f) < 2 {
		return nil, "", errors.New("no key after the tag")
	}
	b, err := base64.StdEncoding.Strict().DecodeString(f[1])
	if err != nil || len(b) != n {
		return nil, "", fmt.Errorf("key %q: want base64 of %d bytes", f[1], n)
	}
	comment := ""
	if len(f) == 3 {
		comment = strings.TrimSpace(f[2])
		if err := CheckComment(comment); err != nil {
			return nil, "", err
		}
	}
	return b, comment, nil
}

// ParsePublicKeys reads a public key file: one key a line, at least one.
func ParsePublicKeys(data []byte) ([]PublicKey, error) {
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("public key file: %d bytes, more than %d", len(data), maxKeyFile)
	}
	var keys []PublicKey
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		b, comment, err := parseKeyLine(line, publicTag, ed25519.PublicKeySize)
		if err != nil {
			return nil, fmt.Errorf("public key file line %d: %w", i+1, err)
		}
		keys = append(keys, PublicKey{Key: ed25519.PublicKey(b), Comment: comment})
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("public key file: no %s lines (make a key with: mkimage key generate)", publicTag)
	}
	return keys, nil
}

// ParsePrivateKey reads a private key file's content.
func ParsePrivateKey(data []byte) (PrivateKey, error) {
	line, rest, _ := strings.Cut(string(data), "\n")
	if strings.TrimSpace(rest) != "" {
		return PrivateKey{}, errors.New("private key file: more than one line")
	}
	seed, comment, err := parseKeyLine(strings.TrimSpace(line), privateTag, ed25519.SeedSize)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("private key file: %w", err)
	}
	return PrivateKey{Key: ed25519.NewKeyFromSeed(seed), Comment: comment}, nil
}

// ReadPrivateKey reads the private key file at path, refusing one that
// users other than its owner may read or write (as ssh does): a signing
// key others can copy lets them update every node.
func ReadPrivateKey(path string) (PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return PrivateKey{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return PrivateKey{}, err
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return PrivateKey{}, fmt.Errorf("%s: mode %04o lets other users at the signing key; run chmod 600 %s", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile))
	if err != nil {
		return PrivateKey{}, fmt.Errorf("%s: %w", path, err)
	}
	k, err := ParsePrivateKey(data)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// WriteKeyPair writes k to path (mode 0600) and its public key to
// path.pub (0644). Neither may exist: a signing key is never overwritten.
func WriteKeyPair(path string, k PrivateKey) error {
	if err := CheckComment(k.Comment); err != nil {
		return err
	}
	pub := path + ".pub"
	for _, p := range []string{path, pub} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s exists; refusing to overwrite a key (pick another path or remove it)", p)
		}
	}
	if err := atomicfile.WriteNewFile(path, k.Marshal(), 0o600); err != nil {
		return err
	}
	if err := atomicfile.WriteNewFile(pub, []byte(k.Public().String()+"\n"), 0o644); err != nil {
		os.Remove(path) // a private key without its public half is no use
		return err
	}
	return nil
}
