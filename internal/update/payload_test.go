package update

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// endless gives zeros forever and counts what was taken.
type endless struct{ n int }

func (e *endless) Read(p []byte) (int, error) { clear(p); e.n += len(p); return len(p), nil }

func TestPayloadReader(t *testing.T) {
	data := bytes.Repeat([]byte("payload "), 1000)
	p := Payload{Name: RootFull, Kind: KindRootFull, SHA256: sum(data), Size: int64(len(data))}
	flipped := bytes.Clone(data)
	flipped[4000] ^= 1
	netErr := errors.New("connection reset")
	for _, c := range []struct {
		name  string
		p     Payload
		r     io.Reader
		error string // "" for a payload that checks out
	}{
		{"exact", p, bytes.NewReader(data), ""},
		{"one byte at a time", p, iotest.OneByteReader(bytes.NewReader(data)), ""},
		{"last bytes with EOF", p, iotest.DataErrReader(bytes.NewReader(data)), ""},
		{"empty", Payload{Name: "e", SHA256: sum(nil)}, strings.NewReader(""), ""},
		{"extra bytes", p, io.MultiReader(bytes.NewReader(data), strings.NewReader("x")), "payload root.full: more than the 8000 bytes manifest.json gives"},
		{"extra bytes with EOF", p, iotest.DataErrReader(bytes.NewReader(append(bytes.Clone(data), 'x'))), "more than the 8000 bytes"},
		{"cut short", p, bytes.NewReader(data[:7999]), "payload root.full: 7999 bytes, manifest.json gives 8000 (cut short"},
		{"flipped byte", p, bytes.NewReader(flipped), "payload root.full: sha256 " + sum(flipped) + ", manifest.json gives " + p.SHA256 + " (corrupted or changed)"},
		{"read error", p, io.MultiReader(bytes.NewReader(data[:100]), iotest.ErrReader(netErr)), "payload root.full: connection reset"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := NewPayloadReader(c.r, c.p)
			got, err := io.ReadAll(r)
			if c.error == "" {
				if err != nil || int64(len(got)) != c.p.Size {
					t.Errorf("read %d bytes, %v", len(got), err)
				}
				return
			}
			wantErr(t, err, c.error)
			if c.name != "read error" && !errors.Is(err, ErrInvalid) {
				t.Errorf("%v does not wrap ErrInvalid", err)
			}
			if c.name == "read error" && (!errors.Is(err, netErr) || errors.Is(err, ErrInvalid)) {
				t.Errorf("%v: a read error is not the bundle's fault", err)
			}
			if int64(len(got)) > c.p.Size {
				t.Errorf("passed on %d bytes of a %d-byte payload", len(got), c.p.Size)
			}
			// The failure sticks.
			if _, err2 := r.Read(make([]byte, 10)); err2 == nil || err2.Error() != err.Error() {
				t.Errorf("read after failure: %v", err2)
			}
		})
	}
	// A server sending forever is cut off at the first byte too many.
	e := &endless{}
	_, err := io.ReadAll(NewPayloadReader(e, p))
	wantErr(t, err, "more than the 8000 bytes")
	if e.n > len(data)+1 {
		t.Errorf("took %d bytes from an endless source of a %d-byte payload", e.n, len(data))
	}
}
