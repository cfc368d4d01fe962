package firstboot

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"math/big"
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

// hostKey is one generated key in OpenSSH's file formats.
type hostKey struct {
	Type    string // "ed25519", "ecdsa"
	Private []byte // PEM "OPENSSH PRIVATE KEY"
	Public  []byte // authorized_keys line
}

func newEd25519(comment string) (hostKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return hostKey{}, err
	}
	blob := sshBuf(nil).str([]byte("ssh-ed25519")).str(pub)
	privPart := sshBuf(nil).str([]byte("ssh-ed25519")).str(pub).str(priv)
	return marshalKey("ed25519", "ssh-ed25519", blob, privPart, comment)
}

func newECDSA(comment string) (hostKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return hostKey{}, err
	}
	ek, err := k.ECDH()
	if err != nil {
		return hostKey{}, err
	}
	q := ek.PublicKey().Bytes() // uncompressed point
	d := new(big.Int).SetBytes(ek.Bytes())
	const name = "ecdsa-sha2-nistp256"
	blob := sshBuf(nil).str([]byte(name)).str([]byte("nistp256")).str(q)
	privPart := sshBuf(nil).str([]byte(name)).str([]byte("nistp256")).str(q).mpint(d)
	return marshalKey("ecdsa", name, blob, privPart, comment)
}

func marshalKey(typ, name string, blob, keyPart []byte, comment string) (hostKey, error) {
	var check [4]byte
	if _, err := rand.Read(check[:]); err != nil {
		return hostKey{}, err
	}
	c := binary.BigEndian.Uint32(check[:])
	priv := sshBuf(nil).u32(c).u32(c)
	priv = append(priv, keyPart...)
	priv = priv.str([]byte(comment))
	for i := byte(1); len(priv)%8 != 0; i++ {
		priv = append(priv, i)
	}
	out := sshBuf([]byte("openssh-key-v1\x00")).str([]byte("none")).str([]byte("none")).str(nil).u32(1).str(blob).str(priv)
	pemData := pem.EncodeToMemory(&pem.Block{Type: "OPENSSH PRIVATE KEY", Bytes: out})
	pub := name + " " + base64.StdEncoding.EncodeToString(blob) + " " + comment + "\n"
	return hostKey{Type: typ, Private: pemData, Public: []byte(pub)}, nil
}
