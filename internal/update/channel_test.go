package update

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
)

func testChannel() Channel {
	return Channel{
		Format: ChannelFormat, Name: "stable", Sequence: 7, Version: "0123456789abcdef",
		Source: "http://build-host:8080/bundles/v2/", MaxRebooting: 4,
		Waves: []Wave{
			{Name: "canary", Roles: []string{"worker"}, Fraction: 0.25, MaxFailures: 0, MinSoak: 600, Open: true, FirstCommit: 1700000000},
			{Name: "workers", Roles: []string{"worker"}, Fraction: 1, MaxFailures: 2, MinSoak: 600},
			{Name: "edge", Roles: []string{"gateway", "router"}, Fraction: 1},
		},
	}
}

func TestChannelSignVerify(t *testing.T) {
	key, other := testKey(3, "channel"), testKey(4, "other")
	c := testChannel()
	file, err := SignChannel(c, key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := VerifyChannel(file, []PublicKey{other.Public(), key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := SignChannel(got, key); !bytes.Equal(again, file) {
		t.Errorf("verified channel signs to\n%s\nwant\n%s", again, file)
	}
	doc, _ := c.Marshal()
	tests := []struct {
		name string
		file []byte
		want string
	}{
		{"other key", append(append([]byte{}, doc...), Sign(doc, other)...), "not a signature"},
		{"changed", bytes.Replace(file, []byte(`"sequence": 7`), []byte(`"sequence": 8`), 1), "not a signature"},
		{"no signature", doc, "signature"},
		{"one line", []byte("AAAA\n"), "want the document and a signature line"},
		{"too big", bytes.Repeat([]byte("x"), MaxChannelSize+1), "more than"},
		{"compact JSON", signed(key, compact(doc)), "not in the form"},
		{"newer format", signed(key, []byte(`{"format": 2}`+"\n")), "format 2"},
		{"unknown field", signed(key, bytes.Replace(doc, []byte(`"halted"`), []byte(`"extra": 1, "halted"`), 1)), "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := VerifyChannel(tt.file, []PublicKey{key.Public()})
			wantErr(t, err, tt.want)
		})
	}
}

func compact(doc []byte) []byte {
	var b bytes.Buffer
	json.Compact(&b, doc)
	return append(b.Bytes(), '\n')
}

func signed(k PrivateKey, doc []byte) []byte {
	return append(append([]byte{}, doc...), Sign(doc, k)...)
}

func TestChannelValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Channel)
		want string
	}{
		{"format", func(c *Channel) { c.Format = 2 }, "format 2"},
		{"name", func(c *Channel) { c.Name = "Stable" }, `name "Stable"`},
		{"sequence", func(c *Channel) { c.Sequence = 0 }, "sequence 0"},
		{"version", func(c *Channel) { c.Version = "v2" }, "version"},
		{"source empty", func(c *Channel) { c.Source = "" }, "source"},
		{"source control", func(c *Channel) { c.Source = "http://x/\n" }, "source"},
		{"max_rebooting", func(c *Channel) { c.MaxRebooting = 0 }, "max_rebooting 0"},
		{"reason, not halted", func(c *Channel) { c.HaltReason = "x" }, "halt_reason"},
		{"no waves", func(c *Channel) { c.Waves = nil }, "0 waves"},
		{"wave twice", func(c *Channel) { c.Waves[1].Name = "canary" }, "listed twice"},
		{"no roles", func(c *Channel) { c.Waves[0].Roles = nil }, "0 roles"},
		{"role twice", func(c *Channel) { c.Waves[2].Roles = []string{"router", "router"} }, `role "router" listed twice`},
		{"fraction", func(c *Channel) { c.Waves[0].Fraction = 1.5 }, "fraction 1.5"},
		{"fraction NaN", func(c *Channel) { c.Waves[0].Fraction = math.NaN() }, "fraction NaN"},
		{"max_failures", func(c *Channel) { c.Waves[0].MaxFailures = -1 }, "max_failures -1"},
		{"min_soak", func(c *Channel) { c.Waves[0].MinSoak = -1 }, "min_soak_seconds -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testChannel()
			c.Waves = append([]Wave(nil), c.Waves...)
			tt.edit(&c)
			_, err := c.Marshal()
			wantErr(t, err, tt.want)
		})
	}
	c := testChannel()
	c.Halted, c.HaltReason = true, "3 workers failed"
	if _, err := c.Marshal(); err != nil {
		t.Errorf("halted channel: %v", err)
	}
}

func TestDecide(t *testing.T) {
	c := testChannel()
	v := c.Version
	// Find a worker inside the canary's quarter and one outside it.
	var in, out string
	for i := 0; in == "" || out == ""; i++ {
		n := fmt.Sprintf("node-%02d", i)
		if c.Bucket(n) < 0.25 {
			in = n
		} else {
			out = n
		}
	}
	halted := testChannel()
	halted.Halted, halted.HaltReason = true, "too many failures"
	open := testChannel()
	open.Waves = append([]Wave(nil), open.Waves...)
	open.Waves[2].Open = true
	tests := []struct {
		name string
		c    Channel
		n    NodeVersions
		take bool
		why  string
	}{
		{"canary worker", c, NodeVersions{Name: in, Role: "worker", Running: "1111111111111111", Good: "1111111111111111"}, true, "wave canary is open"},
		{"other worker waits", c, NodeVersions{Name: out, Role: "worker"}, false, "wave workers is not open yet"},
		{"gateway waits", c, NodeVersions{Name: in, Role: "gateway"}, false, "wave edge is not open yet"},
		{"gateway in open wave", open, NodeVersions{Name: out, Role: "gateway"}, true, "wave edge is open"},
		{"unknown role", c, NodeVersions{Name: in, Role: "storage"}, false, `no wave of channel stable takes role "storage"`},
		{"halted", halted, NodeVersions{Name: in, Role: "worker"}, false, "halted (too many failures)"},
		{"running", c, NodeVersions{Name: in, Role: "worker", Running: v, Good: v}, false, "is running"},
		{"good, not running", c, NodeVersions{Name: in, Role: "worker", Running: "1111111111111111", Good: v}, false, "good already"},
		{"bad", c, NodeVersions{Name: in, Role: "worker", Bad: []string{"2222222222222222", v}}, false, "recorded bad"},
		{"other bad", c, NodeVersions{Name: in, Role: "worker", Bad: []string{"2222222222222222"}}, true, "open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.c.Decide(tt.n)
			if d.Take != tt.take || !strings.Contains(d.Why, tt.why) {
				t.Errorf("Decide(%+v) = %+v, want take %v, why containing %q", tt.n, d, tt.take, tt.why)
			}
		})
	}
}

// TestBucket: stable for one version, spread evenly, different for the
// next version.
func TestBucket(t *testing.T) {
	c, next := testChannel(), testChannel()
	next.Version = "fedcba9876543210"
	below, moved := 0, 0
	const n = 2000
	for i := range n {
		node := fmt.Sprintf("node-%04d", i)
		b := c.Bucket(node)
		if b < 0 || b >= 1 || b != c.Bucket(node) {
			t.Fatalf("Bucket(%s) = %v, then %v", node, b, c.Bucket(node))
		}
		if b < 0.25 {
			below++
		}
		if (b < 0.25) != (next.Bucket(node) < 0.25) {
			moved++
		}
	}
	if below < n/4-100 || below > n/4+100 {
		t.Errorf("%d of %d nodes below 0.25, want about %d", below, n, n/4)
	}
	if moved < n/10 {
		t.Errorf("only %d nodes change sides with the next version", moved)
	}
}
