// Package i2p makes and reads the destination key files of i2pd, the C++
// I2P router Debian ships, and computes their .b32.i2p addresses. It uses
// only the standard library so that nodeinit can make a node's keys on the
// node at boot without i2pd in the initramfs.
//
// The file is what i2pd's PrivateKeys::ToBuffer writes (libi2pd/Identity.cpp)
// and what ClientContext::LoadPrivateKeys reads for a tunnel's "keys = FILE"
// (libi2pd_client/ClientContext.cpp):
//
//	identity   387 bytes: encryption public key (256), signing public key
//	           (128, right-aligned, left-padded), certificate type (1) and
//	           length (2, big endian)
//	extension  the certificate's payload (4 bytes for a key certificate):
//	           signing key type and crypto key type, 2 bytes each, big endian
//	private    the encryption private key: 256 bytes (32 for crypto type 4)
//	signing    the signing private key (32 bytes for Ed25519: its seed)
//
// The address is the SHA-256 of identity plus extension, in lower-case
// base32 without padding (libi2pd/Base.cpp ByteStreamToBase32), plus
// ".b32.i2p".
package i2p

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"strings"
)

// Sizes and types from libi2pd/Identity.h.
const (
	identitySize        = 387 // DEFAULT_IDENTITY_SIZE
	certTypeNull        = 0   // CERTIFICATE_TYPE_NULL: DSA-SHA1 and ElGamal
	certTypeKey         = 5   // CERTIFICATE_TYPE_KEY
	SigTypeEd25519      = 7   // SIGNING_KEY_TYPE_EDDSA_SHA512_ED25519
	CryptoTypeElGamal   = 0   // CRYPTO_KEY_TYPE_ELGAMAL
	cryptoTypeX25519    = 4   // CRYPTO_KEY_TYPE_ECIES_X25519_AEAD
	maxExtension        = 8   // MAX_EXTENDED_BUFFER_SIZE
	ed25519PublicOffset = 256 + 128 - ed25519.PublicKeySize
)

// KeyFileSize is the size of a file NewKeys makes.
const KeyFileSize = identitySize + 4 + 256 + ed25519.SeedSize

var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewKeys returns a new destination key file with the key types i2pd gives
// a server tunnel without signaturetype/cryptotype options: EdDSA-SHA512-
// Ed25519 (7) and ElGamal (0) (ClientContext.cpp, ReadTunnels: the
// I2P_SERVER_TUNNEL_SIGNATURE_TYPE and crypto type defaults). i2pd makes a
// tunnel's keys with PrivateKeys::CreateRandomKeys(sig, crypto,
// isDestination = true), which generates no ElGamal pair: the identity's
// encryption key is padding and the private key random bytes, since a
// destination's encryption keys live in its LeaseSet and are made at every
// start (Destination.cpp, ClientDestination). The same is done here, so no
// ElGamal arithmetic is needed. The padding is one random 32-byte block
// repeated, as IdentityEx's constructor does.
func NewKeys() ([]byte, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	var pad [32]byte
	if _, err := rand.Read(pad[:]); err != nil {
		return nil, err
	}
	b := make([]byte, 0, KeyFileSize)
	for range 8 { // encryption public key: padding
		b = append(b, pad[:]...)
	}
	for range 3 { // signing public key field: 96 bytes of padding ...
		b = append(b, pad[:]...)
	}
	b = append(b, pub...) // ... then the Ed25519 public key
	b = append(b, certTypeKey)
	b = binary.BigEndian.AppendUint16(b, 4)
	b = binary.BigEndian.AppendUint16(b, SigTypeEd25519)
	b = binary.BigEndian.AppendUint16(b, CryptoTypeElGamal)
	encPriv := make([]byte, 256)
	if _, err := rand.Read(encPriv); err != nil {
		return nil, err
	}
	b = append(b, encPriv...)
	return append(b, priv.Seed()...), nil
}

// Keys is what Parse reads from a key file.
type Keys struct {
	Address    string // xxxx.b32.i2p
	SigType    int
	CryptoType int
}

// Parse reads a key file as i2pd's PrivateKeys::FromBuffer does, far
// enough to compute its address and to check that i2pd will load it: the
// lengths add up, and for Ed25519 the public key in the identity is the
// seed's (i2pd would sign with a key that does not match, see
// EDDSA25519Signer). Offline-signed keys are not supported.
func Parse(b []byte) (Keys, error) {
	if len(b) < identitySize {
		return Keys{}, fmt.Errorf("%d bytes, shorter than an I2P identity (%d)", len(b), identitySize)
	}
	certType, ext := b[identitySize-3], int(binary.BigEndian.Uint16(b[identitySize-2:]))
	if !(certType == certTypeNull && ext == 0) && !(certType == certTypeKey && ext >= 4 && ext <= maxExtension) {
		return Keys{}, fmt.Errorf("certificate type %d length %d (expected a key certificate, type 5, or none)", certType, ext)
	}
	full := identitySize + ext
	if len(b) < full {
		return Keys{}, fmt.Errorf("%d bytes, shorter than its identity (%d)", len(b), full)
	}
	k := Keys{}
	if ext > 0 {
		k.SigType = int(binary.BigEndian.Uint16(b[identitySize:]))
		k.CryptoType = int(binary.BigEndian.Uint16(b[identitySize+2:]))
	}
	sum := sha256.Sum256(b[:full])
	k.Address = b32.EncodeToString(sum[:]) + ".b32.i2p"
	privLen := 256
	if k.CryptoType == cryptoTypeX25519 {
		privLen = 32
	}
	switch k.SigType {
	case SigTypeEd25519:
		want := full + privLen + ed25519.SeedSize
		if len(b) != want {
			return k, fmt.Errorf("%d bytes (expected %d for signing type %d, crypto type %d)", len(b), want, k.SigType, k.CryptoType)
		}
		seed := b[full+privLen:]
		pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
		if string(pub) != string(b[ed25519PublicOffset:ed25519PublicOffset+ed25519.PublicKeySize]) {
			return k, fmt.Errorf("the Ed25519 private key does not match the identity's public key")
		}
	default:
		if len(b) < full+privLen {
			return k, fmt.Errorf("%d bytes, too short for signing type %d", len(b), k.SigType)
		}
	}
	return k, nil
}

// ValidAddress reports whether s is a .b32.i2p address: 52 base32
// characters (a SHA-256) before the suffix. The longer b33 addresses of
// encrypted LeaseSets are not taken: i2pd's client tunnels need the
// destination's key to read them.
func ValidAddress(s string) bool {
	h, ok := strings.CutSuffix(s, ".b32.i2p")
	if !ok || len(h) != 52 {
		return false
	}
	d, err := b32.DecodeString(h)
	return err == nil && len(d) == sha256.Size && b32.EncodeToString(d) == h
}
