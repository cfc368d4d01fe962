package update

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func testReport() Report {
	return Report{Node: "node-01", Time: time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC), Status: Status{
		Running: "1111111111111111", Good: "1111111111111111",
		Versions: []Version{{ID: "1111111111111111", State: "good", Running: true}},
	}}
}

func TestSignVerifyReport(t *testing.T) {
	k := testKey(1, "report key of node-01")
	body, key, sig, err := SignReport(testReport(), k)
	if err != nil {
		t.Fatal(err)
	}
	r, pub, err := VerifyReport(body, key, sig)
	if err != nil {
		t.Fatal(err)
	}
	if r.Node != "node-01" || r.Status.Good != "1111111111111111" || !SameKey(pub, k.Public()) || pub.Comment != k.Comment {
		t.Errorf("verified %+v by %s", r, pub)
	}

	other := testKey(2, "")
	for _, tt := range []struct {
		name           string
		body           []byte
		key, sig, want string
		sigErr         bool
	}{
		{name: "body changed", body: bytes.Replace(body, []byte("node-01"), []byte("node-02"), 1), key: key, sig: sig, sigErr: true},
		{name: "another key sent", body: body, key: other.Public().String(), sig: sig, sigErr: true},
		{name: "no key", body: body, sig: sig, want: "want one mkimage-ed25519-public line"},
		{name: "two keys", body: body, key: key + "\n" + other.Public().String(), sig: sig, want: "want one"},
		{name: "no signature", body: body, key: key, want: "want base64 of a 64-byte"},
		{name: "oversize", body: make([]byte, MaxReportSize+1), key: key, sig: sig, want: "more than 65536"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := VerifyReport(tt.body, tt.key, tt.sig)
			if tt.sigErr {
				if !errors.Is(err, ErrReportSignature) {
					t.Errorf("error %v, want ErrReportSignature", err)
				}
				return
			}
			wantErr(t, err, tt.want)
		})
	}

	// A signed body that is not a report, or names no valid node.
	bad := testReport()
	bad.Node = "Node_01"
	if _, _, _, err := SignReport(bad, k); err == nil || !strings.Contains(err.Error(), `"Node_01"`) {
		t.Errorf("SignReport of a bad name: %v", err)
	}
	junk := []byte(`{"node": "../etc"}`)
	if _, _, err := VerifyReport(junk, key, string(Sign(junk, k))); err == nil || !strings.Contains(err.Error(), `"../etc"`) {
		t.Errorf("VerifyReport of a bad name: %v", err)
	}
}

func TestCheckNodeName(t *testing.T) {
	for name, ok := range map[string]bool{
		"node-01": true, "n1.lab.example": true, "a": true,
		"": false, "Node": false, "-a": false, "a-": false, "a..b": false, ".": false, "..": false,
		"a/b": false, "a_b": false, strings.Repeat("a", 64): false, "(none)": false,
	} {
		if err := CheckNodeName(name); (err == nil) != ok {
			t.Errorf("CheckNodeName(%q): %v, want ok %v", name, err, ok)
		}
	}
}
