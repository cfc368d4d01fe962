package update

import (
	"bytes"
	"strings"
	"testing"
)

func testNetboot() NetbootManifest {
	return NetbootManifest{Format: FormatVersion, Board: "qemu-virt", Created: 1700000000, Files: []NetbootItem{
		{Name: "root.img", Size: 4, SHA256: sum([]byte("root"))},
		{Name: "root.img.bmap", Size: 3, SHA256: sum([]byte("map"))},
	}}
}

func TestNetbootManifest(t *testing.T) {
	key, other := testKey(4, "netboot"), testKey(5, "someone else")
	keys := []PublicKey{key.Public()}
	good, err := testNetboot().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sig := Sign(good, key)
	m, by, err := VerifyNetboot(good, sig, keys)
	if err != nil {
		t.Fatal(err)
	}
	if !SameKey(by, key.Public()) {
		t.Errorf("signed by %s, want %s", by, key.Public())
	}
	if f, err := m.File("root.img.bmap"); err != nil || f.Size != 3 {
		t.Errorf("File: %+v, %v", f, err)
	}
	if _, err := m.File("node.img"); err == nil || !strings.Contains(err.Error(), "images.json does not list node.img") {
		t.Errorf("File of an unlisted name: %v", err)
	}

	mod := func(f func(*NetbootManifest)) []byte {
		m := testNetboot()
		f(&m)
		b, _ := m.Marshal()
		return b
	}
	flipped := bytes.Replace(good, []byte(`"size": 4`), []byte(`"size": 5`), 1)
	for _, c := range []struct {
		name     string
		doc, sig []byte
		keys     []PublicKey
		want     string
	}{
		{"changed after signing", flipped, sig, keys, `images.sig is not a signature of images.json by any of the 1 trusted keys ("netboot")`},
		{"signed by another key", good, Sign(good, other), keys, "the netboot tree was changed or signed with another key"},
		{"no signature", good, nil, keys, "images.sig: want base64"},
		{"no keys", good, sig, nil, "no trusted keys"},
		{"other spelling", bytes.Replace(good, []byte("  "), []byte(" "), 1), Sign(bytes.Replace(good, []byte("  "), []byte(" "), 1), key), keys, "not in the form mkimage writes"},
		{"unknown field", []byte(`{"format":1,"x":1}`), Sign([]byte(`{"format":1,"x":1}`), key), keys, `unknown field "x"`},
		{"newer format", []byte(`{"format":2}`), Sign([]byte(`{"format":2}`), key), keys, "format 2; this mkimage reads format 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := VerifyNetboot(c.doc, c.sig, c.keys)
			wantErr(t, err, c.want)
		})
	}

	for _, c := range []struct {
		name string
		f    func(*NetbootManifest)
		want string
	}{
		{"path", func(m *NetbootManifest) { m.Files[0].Name = "../root.img" }, "is a path"},
		{"twice", func(m *NetbootManifest) { m.Files[1].Name = "root.img" }, `"root.img" listed twice`},
		{"own name", func(m *NetbootManifest) { m.Files[0].Name = NetbootSignature }, "is the manifest's"},
		{"bad sum", func(m *NetbootManifest) { m.Files[0].SHA256 = "ABC" }, `sha256 "ABC"`},
		{"negative size", func(m *NetbootManifest) { m.Files[0].Size = -1 }, "size -1"},
		{"no files", func(m *NetbootManifest) { m.Files = nil }, "0 files"},
		{"board", func(m *NetbootManifest) { m.Board = "Odroid C2" }, `board "Odroid C2"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			if b := mod(c.f); b != nil {
				t.Fatalf("Marshal wrote an invalid manifest:\n%s", b)
			}
			m := testNetboot()
			c.f(&m)
			wantErr(t, m.Validate(), c.want)
		})
	}
}

// FuzzVerifyNetboot: as FuzzVerify, for the netboot tree's manifest.
func FuzzVerifyNetboot(f *testing.F) {
	key := testKey(9, "fuzz")
	keys := []PublicKey{key.Public()}
	good, _ := testNetboot().Marshal()
	f.Add(good, Sign(good, key))
	f.Add([]byte(`{"format":1,"board":"x","files":[]}`), []byte("AAAA\n"))
	f.Add(bytes.Replace(good, []byte(`"root.img"`), []byte(`"../root.img"`), 1), Sign(good, key))
	f.Fuzz(func(t *testing.T, doc, sig []byte) {
		for _, s := range [][]byte{sig, Sign(doc, key)} {
			m, _, err := VerifyNetboot(doc, s, keys)
			if err != nil {
				continue
			}
			if again, err := m.Marshal(); err != nil || !bytes.Equal(again, doc) {
				t.Fatalf("accepted %q, which Marshal writes as %q (%v)", doc, again, err)
			}
		}
	})
}
