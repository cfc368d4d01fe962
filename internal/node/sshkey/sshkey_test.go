package sshkey

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// ReadPair takes only a pair whose private half carries its public one.
func TestReadPair(t *testing.T) {
	dir := t.TempDir()
	a, _ := NewEd25519("a")
	b, _ := NewECDSA("b")
	base := filepath.Join(dir, "k")
	for _, c := range []struct {
		name      string
		priv, pub []byte
		ok        bool
	}{
		{"pair", a.Private, a.Public, true},
		{"ecdsa pair", b.Private, b.Public, true},
		{"mismatched", a.Private, b.Public, false},
		{"private cut short", a.Private[:len(a.Private)/2], a.Public, false},
		{"empty public", a.Private, nil, false},
		{"no private", nil, a.Public, false},
	} {
		os.Remove(base)
		os.Remove(base + ".pub")
		if c.priv != nil {
			os.WriteFile(base, c.priv, 0o600)
		}
		os.WriteFile(base+".pub", c.pub, 0o644)
		fp, ok := ReadPair(base)
		if ok != c.ok {
			t.Errorf("%s: ok %v, want %v", c.name, ok, c.ok)
		}
		if ok && fp != Fingerprint(a.Blob) && fp != Fingerprint(b.Blob) {
			t.Errorf("%s: fingerprint %s", c.name, fp)
		}
	}
}

// Ensure makes a pair OpenSSH reads, keeps it on the next call, and
// replaces a pair a power cut left without its public half.
func TestEnsure(t *testing.T) {
	base := filepath.Join(t.TempDir(), "backup", "id_ed25519")
	pub, made, err := Ensure(base, "backup@n1")
	if err != nil || !made {
		t.Fatalf("first Ensure: made %v, %v", made, err)
	}
	if st, err := os.Stat(base); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key: %v %v", st, err)
	}
	if _, err := exec.LookPath("ssh-keygen"); err == nil {
		// OpenSSH derives the same public key from the private file.
		out, err := exec.Command("ssh-keygen", "-y", "-f", base).CombinedOutput()
		if err != nil {
			t.Fatalf("ssh-keygen -y: %v: %s", err, out)
		}
		if f := strings.Fields(string(pub)); len(f) < 2 || !strings.HasPrefix(string(out), f[0]+" "+f[1]) {
			t.Errorf("ssh-keygen -y gives %q, Ensure reported %q", out, pub)
		}
	}
	again, made, err := Ensure(base, "backup@n1")
	if err != nil || made || !bytes.Equal(again, pub) {
		t.Errorf("second Ensure: made %v, same %v, %v", made, bytes.Equal(again, pub), err)
	}
	os.Remove(base + ".pub")
	fresh, made, err := Ensure(base, "backup@n1")
	if err != nil || !made || bytes.Equal(fresh, pub) {
		t.Errorf("after losing the public half: made %v, new key %v, %v", made, !bytes.Equal(fresh, pub), err)
	}
}
