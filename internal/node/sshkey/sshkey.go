// Package sshkey makes and reads OpenSSH key pairs on the node: host keys
// at first boot, the backup client key.
package sshkey

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"

	"github.com/mkimage/mkimage/internal/atomicfile"
)

// The OpenSSH private key format ("openssh-key-v1", unencrypted) is
// written here with the standard library rather than golang.org/x/crypto,
// which the module does not otherwise need: ed25519 and ECDSA P-256 host
// keys are cheap to make on a slow ARM core (RSA is not).

type sshBuf []byte

func (b sshBuf) u32(v uint32) sshBuf { return binary.BigEndian.AppendUint32(b, v) }
func (b sshBuf) str(s []byte) sshBuf { return append(b.u32(uint32(len(s))), s...) }
func (b sshBuf) mpint(v *big.Int) sshBuf {
	x := v.Bytes()
	if len(x) > 0 && x[0]&0x80 != 0 {
		x = append([]byte{0}, x...)
	}
	return b.str(x)
}

// Key is one generated key in OpenSSH's file formats.
type Key struct {
	Private []byte // PEM "OPENSSH PRIVATE KEY"
	Public  []byte // authorized_keys line
	Blob    []byte // the public key in SSH wire format
}

// HostTypes are the host keys first boot makes, in order.
var HostTypes = []struct {
	Name string
	Gen  func(comment string) (Key, error)
}{{"ed25519", NewEd25519}, {"ecdsa", NewECDSA}}

// Fingerprint is the key's SHA256 fingerprint as ssh-keygen -l prints it.
func (k Key) Fingerprint() string { return Fingerprint(k.Blob) }

func Fingerprint(blob []byte) string {
	sum := sha256.Sum256(blob)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

const privateKeyMagic = "openssh-key-v1\x00"

// ReadPair reads the key pair base and base.pub and returns its
// fingerprint; ok is false unless both halves are there, whole, and the
// private key file carries the .pub file's public key.
func ReadPair(base string) (fp string, ok bool) {
	pubLine, err1 := os.ReadFile(base + ".pub")
	priv, err2 := os.ReadFile(base)
	f := strings.Fields(string(pubLine))
	if err1 != nil || err2 != nil || len(f) < 2 {
		return "", false
	}
	blob, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil {
		return "", false
	}
	block, _ := pem.Decode(priv)
	if block == nil || block.Type != "OPENSSH PRIVATE KEY" {
		return "", false
	}
	// magic, cipher, KDF, KDF options, key count, then the public key.
	b, ok := bytes.CutPrefix(block.Bytes, []byte(privateKeyMagic))
	for i := 0; ok && i < 3; i++ {
		_, b, ok = sshString(b)
	}
	if !ok || len(b) < 4 || binary.BigEndian.Uint32(b) != 1 {
		return "", false
	}
	embedded, _, ok := sshString(b[4:])
	if !ok || !bytes.Equal(embedded, blob) {
		return "", false
	}
	return Fingerprint(blob), true
}

// sshString splits an SSH wire-format string off b.
func sshString(b []byte) (s, rest []byte, ok bool) {
	if len(b) < 4 || uint64(len(b)-4) < uint64(binary.BigEndian.Uint32(b)) {
		return nil, nil, false
	}
	n := binary.BigEndian.Uint32(b)
	return b[4 : 4+n], b[4+n:], true
}

func NewEd25519(comment string) (Key, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Key{}, err
	}
	blob := sshBuf(nil).str([]byte("ssh-ed25519")).str(pub)
	privPart := sshBuf(nil).str([]byte("ssh-ed25519")).str(pub).str(priv)
	return marshalKey("ssh-ed25519", blob, privPart, comment)
}

func NewECDSA(comment string) (Key, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Key{}, err
	}
	ek, err := k.ECDH()
	if err != nil {
		return Key{}, err
	}
	q := ek.PublicKey().Bytes() // uncompressed point
	d := new(big.Int).SetBytes(ek.Bytes())
	const name = "ecdsa-sha2-nistp256"
	blob := sshBuf(nil).str([]byte(name)).str([]byte("nistp256")).str(q)
	privPart := sshBuf(nil).str([]byte(name)).str([]byte("nistp256")).str(q).mpint(d)
	return marshalKey(name, blob, privPart, comment)
}

func marshalKey(name string, blob, keyPart []byte, comment string) (Key, error) {
	var check [4]byte
	if _, err := rand.Read(check[:]); err != nil {
		return Key{}, err
	}
	c := binary.BigEndian.Uint32(check[:])
	priv := sshBuf(nil).u32(c).u32(c)
	priv = append(priv, keyPart...)
	priv = priv.str([]byte(comment))
	for i := byte(1); len(priv)%8 != 0; i++ {
		priv = append(priv, i)
	}
	out := sshBuf([]byte(privateKeyMagic)).str([]byte("none")).str([]byte("none")).str(nil).u32(1).str(blob).str(priv)
	pemData := pem.EncodeToMemory(&pem.Block{Type: "OPENSSH PRIVATE KEY", Bytes: out})
	pub := name + " " + base64.StdEncoding.EncodeToString(blob) + " " + comment + "\n"
	return Key{Private: pemData, Public: []byte(pub), Blob: blob}, nil
}

// Ensure returns the public line of the ed25519 pair at base and
// base.pub, making the pair first unless a whole one is there. The
// private half is written before the public one, each atomically, so a
// power cut leaves no pair ReadPair takes and the next call makes a new
// one.
func Ensure(base, comment string) (public []byte, made bool, err error) {
	if _, ok := ReadPair(base); ok {
		pub, err := os.ReadFile(base + ".pub")
		return pub, false, err
	}
	k, err := NewEd25519(comment)
	if err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(base), 0o700); err != nil {
		return nil, false, err
	}
	if err := atomicfile.WriteFile(base, k.Private, 0o600); err != nil {
		return nil, false, err
	}
	if err := atomicfile.WriteFile(base+".pub", k.Public, 0o644); err != nil {
		return nil, false, err
	}
	return k.Public, true, nil
}
