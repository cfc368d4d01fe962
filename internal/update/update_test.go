package update

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testKey is a fixed key, so signatures in tests and seeds are stable.
func testKey(seed byte, comment string) PrivateKey {
	return PrivateKey{Key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)), Comment: comment}
}

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// testManifest is a valid manifest of a bundle with every kind of payload.
func testManifest() Manifest {
	return Manifest{
		Format: FormatVersion, Board: "odroid-c2", ID: "0123456789abcdef", Parent: "fedcba9876543210",
		Created: 1700000000, Cmdline: "console=ttyAML0,115200 root=LABEL=root panic=10",
		Payloads: []Payload{
			{Name: RootFull, Kind: KindRootFull, SHA256: sum([]byte("full")), Size: 4},
			{Name: RootFrom("fedcba9876543210"), Kind: KindRootIncremental, Parent: "fedcba9876543210", SHA256: sum([]byte("inc")), Size: 3},
			{Name: BootKernel, Kind: KindBoot, BootName: BootKernel, SHA256: sum([]byte("kernel")), Size: 6},
			{Name: BootInitrd, Kind: KindBoot, BootName: BootInitrd, SHA256: sum(nil), Size: 0},
			{Name: BootDTB, Kind: KindBoot, BootName: BootDTB, SHA256: sum([]byte("dtb")), Size: 3},
		},
	}
}

func marshal(t testing.TB, m Manifest) []byte {
	t.Helper()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantErr(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want one containing %q", err, want)
	}
}

func TestSignVerify(t *testing.T) {
	m := testManifest()
	b := marshal(t, m)
	old, cur := testKey(1, "old key"), testKey(2, "build host 2024")
	sig := Sign(b, cur)
	if !bytes.Equal(sig, Sign(b, cur)) {
		t.Error("signing the same bytes twice gave two signatures")
	}
	// A node trusting two keys (rotation) accepts either.
	got, err := Verify(b, sig, []PublicKey{old.Public(), cur.Public()})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(marshal(t, got), b) {
		t.Errorf("verified manifest differs:\n%s", marshal(t, got))
	}
	if !bytes.HasPrefix(b, []byte("{\n  \"format\": 1,\n  \"board\": \"odroid-c2\",\n  \"id\": \"0123456789abcdef\",\n  \"parent\": \"fedcba9876543210\",\n  \"created\": 1700000000,")) {
		t.Errorf("field order:\n%s", b)
	}
}

func TestVerifyRefuses(t *testing.T) {
	key := testKey(2, "build")
	keys := []PublicKey{testKey(1, "old").Public(), key.Public()}
	good := marshal(t, testManifest())
	signed := func(b []byte) [2][]byte { return [2][]byte{b, Sign(b, key)} }
	edit := func(f func(m *Manifest)) []byte {
		m := testManifest()
		f(&m)
		b, _ := jsonIndent(m)
		return b
	}
	flipped := bytes.Clone(good)
	flipped[bytes.Index(flipped, []byte("odroid"))] ^= 1
	sig := Sign(good, key)
	for _, c := range []struct {
		name  string
		in    [2][]byte // manifest, signature
		keys  []PublicKey
		error string
	}{
		{"flipped byte in the manifest", [2][]byte{flipped, sig}, keys, `manifest.sig is not a signature of manifest.json by any of the 2 trusted keys ("old", "build")`},
		{"signed by another key", [2][]byte{good, Sign(good, testKey(3, "other"))}, keys, "signed with another key"},
		{"flipped byte in the signature", [2][]byte{good, append([]byte{sig[0] ^ 1}, sig[1:]...)}, keys, "not a signature"},
		{"signature cut short", [2][]byte{good, sig[:40]}, keys, "want base64 of a 64-byte ed25519 signature"},
		{"signature not base64", [2][]byte{good, []byte("!!!\n")}, keys, "want base64"},
		{"no keys", [2][]byte{good, sig}, nil, "no trusted keys"},
		{"key of the wrong size", [2][]byte{good, sig}, []PublicKey{{Key: make([]byte, 5), Comment: "short"}}, `("short")`},
		{"too big", [2][]byte{make([]byte, MaxManifestSize+1), sig}, keys, "more than 1048576"},
		{"not JSON", signed([]byte("hello")), keys, "manifest.json: invalid character"},
		{"newer format", signed([]byte(`{"format": 2}`)), keys, "format 2; this mkimage reads format 1"},
		{"unknown field", signed(bytes.Replace(good, []byte(`"format": 1,`), []byte(`"format": 1, "extra": true,`), 1)), keys, `unknown field "extra"`},
		{"other spelling", signed(bytes.Replace(good, []byte(`"board"`), []byte(`"BOARD"`), 1)), keys, "not in the form mkimage writes"},
		{"other layout", signed(bytes.ReplaceAll(good, []byte("\n  "), []byte("\n\t"))), keys, "not in the form mkimage writes"},
		{"trailing data", signed(append(bytes.Clone(good), "{}"...)), keys, "after top-level value"},
		{"duplicate field", signed(bytes.Replace(good, []byte(`"format": 1,`), []byte(`"format": 1, "board": "qemu-virt",`), 1)), keys, "not in the form mkimage writes"},
		{"invalid field", signed(edit(func(m *Manifest) { m.Board = "../etc" })), keys, `board "../etc"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Verify(c.in[0], c.in[1], c.keys)
			wantErr(t, err, c.error)
			if c.keys != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("%v does not wrap ErrInvalid", err)
			}
		})
	}
}

// jsonIndent is Marshal without the validation, for signed manifests
// that are invalid.
func jsonIndent(m Manifest) ([]byte, error) {
	type plain Manifest
	b, err := json.MarshalIndent(plain(m), "", "  ")
	return append(b, '\n'), err
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		name  string
		edit  func(m *Manifest)
		error string
	}{
		{"format", func(m *Manifest) { m.Format = 0 }, "format 0, want 1"},
		{"empty board", func(m *Manifest) { m.Board = "" }, `board ""`},
		{"board with a slash", func(m *Manifest) { m.Board = "a/b" }, `board "a/b"`},
		{"upper-case id", func(m *Manifest) { m.ID = "0123456789ABCDEF" }, `id: version id "0123456789ABCDEF"`},
		{"short id", func(m *Manifest) { m.ID = "0123" }, "want 16"},
		{"zero id", func(m *Manifest) { m.ID = "0000000000000000" }, "all zeros"},
		{"bad parent", func(m *Manifest) { m.Parent = "x" }, `parent: version id "x"`},
		{"parent is itself", func(m *Manifest) { m.Parent = m.ID }, "is the version itself"},
		{"negative time", func(m *Manifest) { m.Created = -1 }, "before 1970"},
		{"no cmdline", func(m *Manifest) { m.Cmdline = "" }, "cmdline: 0 bytes"},
		{"newline in cmdline", func(m *Manifest) { m.Cmdline = "a\nb" }, "cmdline: byte 0xa at 1"},
		{"long cmdline", func(m *Manifest) { m.Cmdline = strings.Repeat("a", 2048) }, "cmdline: 2048 bytes"},
		{"no payloads", func(m *Manifest) { m.Payloads = nil }, "0 payloads"},
		{"path as name", func(m *Manifest) { m.Payloads[0].Name = "../root.full" }, `is a path`},
		{"hidden name", func(m *Manifest) { m.Payloads[0].Name = ".root" }, "starts with a dot"},
		{"control character", func(m *Manifest) { m.Payloads[0].Name = "root\x1b[2J" }, "control characters"},
		{"bad UTF-8", func(m *Manifest) { m.Payloads[0].Name = "root\xff" }, "invalid UTF-8"},
		{"manifest's name", func(m *Manifest) { m.Payloads[0].Name = SignatureFile }, "is the manifest's"},
		{"name twice", func(m *Manifest) { m.Payloads[1].Name = RootFull }, `payload "root.full" listed twice`},
		{"unknown kind", func(m *Manifest) { m.Payloads[0].Kind = "script" }, `kind "script"`},
		{"parent on a full stream", func(m *Manifest) { m.Payloads[0].Parent = m.Parent }, "parent \"fedcba9876543210\" on a root-full payload"},
		{"incremental without parent", func(m *Manifest) { m.Payloads[1].Parent = "" }, `parent: version id ""`},
		{"incremental from itself", func(m *Manifest) { m.Payloads[1].Parent = m.ID }, "is the version itself"},
		{"two streams from one parent", func(m *Manifest) {
			p := m.Payloads[1]
			p.Name = "other"
			m.Payloads = append(m.Payloads, p)
		}, "two incremental root streams from fedcba9876543210"},
		{"two full streams", func(m *Manifest) {
			p := m.Payloads[0]
			p.Name = "other"
			m.Payloads = append(m.Payloads, p)
		}, "2 full root streams"},
		{"no root", func(m *Manifest) { m.Payloads = m.Payloads[2:] }, "no root stream"},
		{"no kernel", func(m *Manifest) { m.Payloads[2].BootName = "vmlinuz" }, "boot files Image and initrd.img are required"},
		{"boot name a path", func(m *Manifest) { m.Payloads[2].BootName = "../../Image" }, "boot_name: \"../../Image\" is a path"},
		{"boot name on a root", func(m *Manifest) { m.Payloads[0].BootName = "x" }, `boot_name "x" on a root-full payload`},
		{"boot name twice", func(m *Manifest) { m.Payloads[4].BootName = BootKernel }, `boot file "Image" given twice`},
		{"short sha256", func(m *Manifest) { m.Payloads[0].SHA256 = "abc" }, `sha256 "abc"`},
		{"upper-case sha256", func(m *Manifest) { m.Payloads[0].SHA256 = strings.ToUpper(m.Payloads[0].SHA256) }, "want 64 lowercase hex digits"},
		{"negative size", func(m *Manifest) { m.Payloads[0].Size = -1 }, "size -1"},
		{"huge size", func(m *Manifest) { m.Payloads[0].Size = 1 << 50 }, "size 1125899906842624"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := testManifest()
			c.edit(&m)
			err := m.Validate()
			wantErr(t, err, c.error)
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%v does not wrap ErrInvalid", err)
			}
			if _, err := m.Marshal(); err == nil {
				t.Error("Marshal accepted what Validate refuses")
			}
		})
	}
	m := testManifest()
	if err := m.Validate(); err != nil {
		t.Errorf("valid manifest: %v", err)
	}
}

func TestCheckID(t *testing.T) {
	for id, ok := range map[string]bool{
		"0123456789abcdef": true, "0000000000000001": true, "ffffffffffffffff": true,
		"": false, "0123456789abcde": false, "0123456789abcdef0": false, "0123456789abcdeg": false,
		"0123456789ABCDEF": false, "0000000000000000": false, "../../../etc/pw": false, "0123456789abcde\n": false,
	} {
		if err := CheckID(id); (err == nil) != ok {
			t.Errorf("CheckID(%q) = %v", id, err)
		}
	}
}

func TestDeriveID(t *testing.T) {
	boot := map[string]string{BootKernel: sum([]byte("k")), BootInitrd: sum([]byte("i"))}
	id := DeriveID("qemu-virt", "console=ttyAMA0", sum([]byte("root")), boot)
	if err := CheckID(id); err != nil {
		t.Fatal(err)
	}
	// Map order does not matter; every input does.
	same := map[string]string{BootInitrd: boot[BootInitrd], BootKernel: boot[BootKernel]}
	if again := DeriveID("qemu-virt", "console=ttyAMA0", sum([]byte("root")), same); again != id {
		t.Errorf("same inputs: %s, then %s", id, again)
	}
	ids := map[string]string{id: "base"}
	for name, other := range map[string]string{
		"board":     DeriveID("odroid-c2", "console=ttyAMA0", sum([]byte("root")), boot),
		"cmdline":   DeriveID("qemu-virt", "console=ttyAMA0 x", sum([]byte("root")), boot),
		"root":      DeriveID("qemu-virt", "console=ttyAMA0", sum([]byte("root2")), boot),
		"boot file": DeriveID("qemu-virt", "console=ttyAMA0", sum([]byte("root")), map[string]string{BootKernel: sum([]byte("k2")), BootInitrd: boot[BootInitrd]}),
		"dtb added": DeriveID("qemu-virt", "console=ttyAMA0", sum([]byte("root")), map[string]string{BootKernel: boot[BootKernel], BootInitrd: boot[BootInitrd], BootDTB: sum(nil)}),
		// Length prefixes: moving a boundary between fields changes the id.
		"boundary": DeriveID("qemu-virtc", "onsole=ttyAMA0", sum([]byte("root")), boot),
	} {
		if prev, dup := ids[other]; dup {
			t.Errorf("changing the %s gives the id of %s", name, prev)
		}
		ids[other] = name
	}
}

func TestRootIdentity(t *testing.T) {
	uuid, ctransid, err := RootIdentity("0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%016x", ctransid) != "0123456789abcdef" {
		t.Errorf("ctransid %#x, want the id's bytes", ctransid)
	}
	if uuid[6]>>4 != 8 || uuid[8]>>6 != 2 {
		t.Errorf("uuid %x: not RFC 9562 version 8", uuid)
	}
	u2, c2, _ := RootIdentity("0123456789abcdef")
	u3, _, _ := RootIdentity("0123456789abcdee")
	if u2 != uuid || c2 != ctransid || u3 == uuid {
		t.Errorf("identity not a function of the id: %x %x %x", uuid, u2, u3)
	}
	if _, _, err := RootIdentity("nope"); err == nil {
		t.Error("RootIdentity accepted an invalid id")
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "signing")
	k, err := GenerateKey(bytes.NewReader(bytes.Repeat([]byte{7}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	k.Comment = "fleet 2024"
	if err := WriteKeyPair(path, k); err != nil {
		t.Fatal(err)
	}
	for p, mode := range map[string]os.FileMode{path: 0o600, path + ".pub": 0o644} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != mode {
			t.Errorf("%s: %v, mode %v, want %v", p, err, st.Mode(), mode)
		}
	}
	pubData, _ := os.ReadFile(path + ".pub")
	if want := "mkimage-ed25519-public " + k.Public().String()[len("mkimage-ed25519-public "):] + "\n"; string(pubData) != want || !strings.HasSuffix(string(pubData), " fleet 2024\n") {
		t.Errorf("public key file %q", pubData)
	}
	got, err := ReadPrivateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Key.Equal(k.Key) || got.Comment != k.Comment {
		t.Errorf("read back %+v", got)
	}
	pubs, err := ParsePublicKeys(pubData)
	if err != nil || len(pubs) != 1 || !pubs[0].Key.Equal(k.Public().Key) || pubs[0].Comment != "fleet 2024" {
		t.Errorf("ParsePublicKeys: %v %+v", err, pubs)
	}

	// Never overwritten, whichever half exists.
	k2, _ := GenerateKey(bytes.NewReader(bytes.Repeat([]byte{8}, 32)))
	wantErr(t, WriteKeyPair(path, k2), path+" exists; refusing to overwrite a key")
	os.Rename(path, path+".moved")
	wantErr(t, WriteKeyPair(path, k2), path+".pub exists")
	if _, err := os.Stat(path); err == nil {
		t.Error("a refused write left a private key behind")
	}
	os.Rename(path+".moved", path)

	// A key others may read is refused.
	os.Chmod(path, 0o640)
	wantErr(t, func() error { _, err := ReadPrivateKey(path); return err }(), "mode 0640 lets other users at the signing key; run chmod 600 "+path)
	wantErr(t, WriteKeyPair(filepath.Join(dir, "k3"), PrivateKey{Key: k.Key, Comment: "two\nlines"}), "key comment")
}

func TestParseKeys(t *testing.T) {
	a, b := testKey(1, "").Public(), testKey(2, "second key").Public()
	keys, err := ParsePublicKeys([]byte("# trusted keys\n\n" + a.String() + "\n  " + b.String() + "  \n"))
	if err != nil || len(keys) != 2 || keys[0].Comment != "" || keys[1].Comment != "second key" || !keys[1].Key.Equal(b.Key) {
		t.Fatalf("%v %+v", err, keys)
	}
	priv := testKey(3, "c")
	for _, c := range []struct {
		name, in, error string
	}{
		{"empty", "", "no mkimage-ed25519-public lines"},
		{"comments only", "# x\n", "no mkimage-ed25519-public lines"},
		{"private key", string(priv.Marshal()), `line 1: starts with "mkimage-ed25519-private"`},
		{"ssh key", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB x", `line 1: starts with "ssh-ed25519"`},
		{"no key", a.String()[:22], "no key after the tag"},
		{"short key", "mkimage-ed25519-public AAAA", "want base64 of 32 bytes"},
		{"second line bad", a.String() + "\nmkimage-ed25519-public !", "line 2: key \"!\""},
		{"control in comment", a.String() + " x\x07", "key comment"},
		{"huge", strings.Repeat("#", 1<<17), "more than 65536"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParsePublicKeys([]byte(c.in))
			wantErr(t, err, c.error)
		})
	}
	got, err := ParsePrivateKey(priv.Marshal())
	if err != nil || !got.Key.Equal(priv.Key) || got.Comment != "c" {
		t.Errorf("private key round trip: %v %+v", err, got)
	}
	for in, want := range map[string]string{
		a.String():                        `starts with "mkimage-ed25519-public"`,
		string(priv.Marshal()) + "more\n": "more than one line",
		"mkimage-ed25519-private AAAA":    "want base64 of 32 bytes",
	} {
		_, err := ParsePrivateKey([]byte(in))
		wantErr(t, err, want)
	}
}
