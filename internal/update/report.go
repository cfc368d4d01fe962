package update

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// A node's status report is a POST of a Report's JSON to the build
// host's /status/NODE, with two headers: the node's public key (a line
// of a public key file) and the base64 ed25519 signature of the exact
// body by it. The key is the node's own, made on the node at its first
// report; the build host pins the first key a node name reports with.
const (
	ReportKeyHeader       = "Mkimage-Report-Key"
	ReportSignatureHeader = "Mkimage-Report-Signature"
	// MaxReportSize bounds a report's body: a card holds a few versions,
	// each a line of status.
	MaxReportSize = 64 << 10
)

// A node asks the build host for a reboot lease before it reboots into a
// new version, so no more than the fleet's K nodes reboot at once (46
// boards on one power supply): a POST to LeasePath+NODE signed as a
// report is (its body the node's Report), answered with a LeaseAnswer,
// 200 when granted, 429 with Retry-After (seconds) when not now.
const LeasePath = "/lease/"

// StatusPath is where a node POSTs its signed Report (StatusPath+NODE)
// and the build host reads the reports (GET StatusPath).
const StatusPath = "/status/"

// LeaseAnswer is the build host's answer to a lease request.
type LeaseAnswer struct {
	Granted bool     `json:"granted"`
	Held    []string `json:"held"` // the nodes holding leases now
	Max     int      `json:"max"`  // K
}

// ErrReportSignature marks a report whose signature is not one of its
// body by the key sent with it.
var ErrReportSignature = errors.New("the signature is not one of the report's body by the key sent with it")

// Report is what a node tells the build host about its versions.
type Report struct {
	Node string    `json:"node"` // the kernel hostname
	Time time.Time `json:"time"` // the node's clock (no RTC on most boards: may be off until NTP)
	// Boot is the kernel's boot id (/proc/sys/kernel/random/boot_id),
	// new at every boot: a report with another than a reboot lease's
	// shows the node came back up (the lease ends).
	Boot   string `json:"boot,omitempty"`
	Status Status `json:"status"`
}

// Received is a report as the build host stored it, with what the
// server itself saw (the node's clock is not to be trusted for "last
// seen").
type Received struct {
	Report
	Received time.Time `json:"received"`
	From     string    `json:"from,omitempty"` // the sender's address
	Key      string    `json:"key"`            // the public key it was signed by
}

// nodeNameRE is a lower-case DNS name (the cluster config's node names
// are one such label).
var nodeNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)

// CheckNodeName accepts the name a node reports under: a lower-case DNS
// name, which is also safe as a file name on the build host.
func CheckNodeName(name string) error {
	if len(name) > 253 || !nodeNameRE.MatchString(name) {
		return fmt.Errorf("node name %q: want a lower-case host name (a-z, 0-9, '-', labels joined by dots); set the node's hostname", name)
	}
	return nil
}

// SignReport returns r's body and the values of the key and signature
// headers that go with it.
func SignReport(r Report, k PrivateKey) (body []byte, key, sig string, err error) {
	if err := CheckNodeName(r.Node); err != nil {
		return nil, "", "", err
	}
	body, err = json.Marshal(r)
	if err != nil {
		return nil, "", "", err
	}
	if len(body) > MaxReportSize {
		return nil, "", "", fmt.Errorf("status report of %d bytes, more than %d (too many versions on the card? run nodeinit update prune)", len(body), MaxReportSize)
	}
	return body, k.Public().String(), string(bytes.TrimSuffix(Sign(body, k), []byte("\n"))), nil
}

// VerifyReport checks that sig is a signature of body by key (the two
// headers' values) and only then parses the report. Whether key is the
// one the node should have is the caller's question (trust on first
// use). A bad signature wraps ErrReportSignature.
func VerifyReport(body []byte, key, sig string) (Report, PublicKey, error) {
	if len(body) > MaxReportSize {
		return Report{}, PublicKey{}, fmt.Errorf("status report of %d bytes, more than %d", len(body), MaxReportSize)
	}
	keys, err := ParsePublicKeys([]byte(key))
	if err != nil || len(keys) != 1 {
		return Report{}, PublicKey{}, fmt.Errorf("header %s %q: want one %s line", ReportKeyHeader, key, publicTag)
	}
	raw, ok := decodeSignature([]byte(sig))
	if !ok {
		return Report{}, PublicKey{}, fmt.Errorf("header %s %q: want base64 of a %d-byte ed25519 signature", ReportSignatureHeader, sig, ed25519.SignatureSize)
	}
	if _, ok := signedBy(body, raw, keys); !ok {
		return Report{}, PublicKey{}, fmt.Errorf("status report signed by %s: %w", keys[0], ErrReportSignature)
	}
	var r Report
	if err := json.Unmarshal(body, &r); err != nil {
		return Report{}, PublicKey{}, fmt.Errorf("status report: %w", err)
	}
	if err := CheckNodeName(r.Node); err != nil {
		return Report{}, PublicKey{}, fmt.Errorf("status report: %w", err)
	}
	return r, keys[0], nil
}

// SameKey reports whether a and b are the same key (comments aside).
func SameKey(a, b PublicKey) bool { return bytes.Equal(a.Key, b.Key) }
