package i2p

import (
	"bytes"
	"strings"
	"testing"
)

func TestNewKeysParse(t *testing.T) {
	a, err := NewKeys()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewKeys()
	if len(a) != KeyFileSize || KeyFileSize != 679 {
		t.Fatalf("%d bytes, KeyFileSize %d; i2pd's EdDSA/ElGamal destination files are 679", len(a), KeyFileSize)
	}
	ka, err := Parse(a)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := Parse(b)
	if ka.Address == kb.Address {
		t.Error("two key files with one address")
	}
	if ka.SigType != 7 || ka.CryptoType != 0 || !ValidAddress(ka.Address) || len(ka.Address) != 60 || ka.Address != strings.ToLower(ka.Address) {
		t.Errorf("%+v", ka)
	}
	// The key certificate: type 5, length 4, signing type 7, crypto type 0.
	if got := a[384:391]; !bytes.Equal(got, []byte{5, 0, 4, 0, 7, 0, 0}) {
		t.Errorf("certificate % x", got)
	}
	bad := bytes.Clone(a)
	bad[len(bad)-1] ^= 1
	if _, err := Parse(bad); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("mismatched seed: %v", err)
	}
	for _, n := range []int{0, 100, 387, 600, 680} {
		short := append(bytes.Clone(a), 0)[:n]
		if _, err := Parse(short); err == nil {
			t.Errorf("%d bytes taken", n)
		}
	}
}

// TestAddressKnown: the address of a fixed identity, as i2pd computes it
// (SHA-256 of identity and certificate payload, base32), against a value
// worked out independently with sha256sum and base32 (coreutils).
func TestAddressKnown(t *testing.T) {
	id := make([]byte, identitySize+4)
	id[384], id[386], id[388] = 5, 4, 7
	// The private keys are zeros, which Parse refuses (no key pair), but
	// it still reports the address.
	k, err := Parse(append(id, make([]byte, 256+32)...))
	if err == nil {
		t.Error("an all-zero key pair taken")
	}
	const want = "yki53a2rw6v5eakh6nan3tj46xhnbsutmbktawuaz7d7l5r5smca.b32.i2p"
	if k.Address != want {
		t.Errorf("address %s, want %s", k.Address, want)
	}
}

func TestValidAddress(t *testing.T) {
	k, _ := NewKeys()
	p, _ := Parse(k)
	for s, want := range map[string]bool{
		p.Address:                  true,
		strings.ToUpper(p.Address): false,
		strings.TrimSuffix(p.Address, ".b32.i2p"): false,
		p.Address[1:]:   false,
		"a" + p.Address: false,
		"web.i2p":       false,
		strings.Replace(p.Address, p.Address[:1], "1", 1): false,
	} {
		if ValidAddress(s) != want {
			t.Errorf("ValidAddress(%q) = %v", s, !want)
		}
	}
}
