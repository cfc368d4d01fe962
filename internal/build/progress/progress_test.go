package progress

import (
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestStatus(t *testing.T) {
	total := Counts{Items: 155, Bytes: 53e6}
	for _, tc := range []struct {
		name    string
		base, c Counts
		elapsed time.Duration
		want    string
	}{
		{"nothing yet", Counts{}, Counts{}, 3 * time.Second, "0/155 packages, 0.0/53.0 MB"},
		{"too early for a rate", Counts{}, Counts{10, 1e6}, 100 * time.Millisecond, "10/155 packages, 1.0/53.0 MB"},
		{"rate and time left", Counts{}, Counts{37, 13e6}, 2 * time.Second, "37/155 packages, 13.0/53.0 MB, 6.5 MB/s, 6s left"},
		{"cached bytes are not in the rate", Counts{5, 3e6}, Counts{37, 13e6}, 2 * time.Second, "37/155 packages, 13.0/53.0 MB, 5.0 MB/s, 8s left"},
		{"done", Counts{}, total, 10 * time.Second, "155/155 packages, 53.0/53.0 MB, 5.3 MB/s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &Meter{unit: "packages", total: total, base: tc.base, start: time.Now().Add(-tc.elapsed)}
			if got := m.Status(tc.c); got != tc.want {
				t.Errorf("Status = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestLines: off a terminal the meter prints a plain line now and then,
// and nothing after Stop.
func TestLines(t *testing.T) {
	// A file: safe to read while the meter writes, and no terminal.
	out, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	read := func() string { b, _ := os.ReadFile(out.Name()); return string(b) }
	var items atomic.Int64
	m := Start(out, Options{
		Label: "apt: fetching", Unit: "packages", Total: Counts{Items: 4, Bytes: 4e6}, Every: 20 * time.Millisecond,
		Poll: func() Counts { n := items.Load(); return Counts{Items: int(n), Bytes: n * 1e6} },
	})
	for i := 0; i < 4; i++ {
		time.Sleep(30 * time.Millisecond)
		items.Add(1)
	}
	if got := m.Stop(); got != (Counts{4, 4e6}) {
		t.Errorf("Stop = %+v", got)
	}
	after := read()
	lines := strings.Split(strings.TrimSpace(after), "\n")
	if len(lines) < 2 {
		t.Fatalf("%d lines: %q", len(lines), after)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "apt: fetching: ") || !strings.Contains(l, "/4 packages, ") {
			t.Errorf("line %q", l)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if read() != after {
		t.Error("lines after Stop")
	}
	m.Stop() // again: no effect
}

// TestNilOut: no writer, no display; Stop still reports.
func TestNilOut(t *testing.T) {
	m := Start(nil, Options{Total: Counts{Items: 1}, Poll: func() Counts { return Counts{Items: 1} }})
	if got := m.Stop(); got.Items != 1 {
		t.Errorf("Stop = %+v", got)
	}
}
