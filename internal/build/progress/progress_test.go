package progress

import (
	"io"
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

// TestStatusReport: steps that count only items, only bytes, learn
// their total late, or say what they are doing.
func TestStatusReport(t *testing.T) {
	for _, tc := range []struct {
		name    string
		unit    string
		total   Counts // Options.Total
		r       Report
		elapsed time.Duration
		want    string
	}{
		{"items only: elapsed instead of a rate", "packages compiled", Counts{Items: 305}, Report{Done: Counts{Items: 37}}, 65 * time.Second, "37/305 packages compiled, 1m5s"},
		{"items and a note", "packages compiled", Counts{Items: 305}, Report{Done: Counts{Items: 37}, Note: "compiling net/http"}, 3 * time.Second, "37/305 packages compiled, 3s, compiling net/http"},
		{"time alone", "", Counts{}, Report{}, 75 * time.Second, "1m15s"},
		{"total not known yet", "packages set up", Counts{}, Report{Note: "booting"}, 12 * time.Second, "12s, booting"},
		{"total learned", "packages set up", Counts{}, Report{Done: Counts{Items: 2}, Total: Counts{Items: 154}}, 40 * time.Second, "2/154 packages set up, 40s"},
		{"items without a total", "packages set up", Counts{}, Report{Done: Counts{Items: 5}}, 40 * time.Second, "5 packages set up, 40s"},
		{"bytes only", "", Counts{}, Report{Done: Counts{Bytes: 20e6}, Total: Counts{Bytes: 100e6}}, 2 * time.Second, "20.0/100.0 MB, 10.0 MB/s, 8s left"},
		{"bytes done", "", Counts{}, Report{Done: Counts{Bytes: 100e6}, Total: Counts{Bytes: 100e6}}, 4 * time.Second, "100.0/100.0 MB, 25.0 MB/s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &Meter{unit: tc.unit, total: tc.total, start: time.Now().Add(-tc.elapsed)}
			m.watch = func() Report { return tc.r }
			if got := m.status(m.poll()); got != tc.want {
				t.Errorf("status = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestLatest: what a writer reports through Latest.SetBytes reaches a
// meter's Watch and Stop.
func TestLatest(t *testing.T) {
	var b Latest
	m := Start(nil, Options{Watch: b.Report})
	if r := b.Report(); r != (Report{}) {
		t.Errorf("before Set: %+v", r)
	}
	for _, done := range []int64{0, 4096, 1 << 20} {
		b.SetBytes(done, 1<<20)
		if r := b.Report(); r.Done.Bytes != done || r.Total.Bytes != 1<<20 {
			t.Errorf("after Set(%d): %+v", done, r)
		}
	}
	if got := m.Stop(); got != (Counts{Bytes: 1 << 20}) {
		t.Errorf("Stop = %+v", got)
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

// TestNothingToCount: a meter without Poll or Watch (time alone) stops
// with nothing counted.
func TestNothingToCount(t *testing.T) {
	if got := Start(nil, Options{Label: "kernel"}).Stop(); got != (Counts{}) {
		t.Errorf("Stop = %+v", got)
	}
}

// TestNilOut: no writer, no display; Stop still reports.
func TestNilOut(t *testing.T) {
	m := Start(nil, Options{Total: Counts{Items: 1}, Poll: func() Counts { return Counts{Items: 1} }})
	if got := m.Stop(); got.Items != 1 {
		t.Errorf("Stop = %+v", got)
	}
}

// TestReading: a reader's bytes reach the total as it is read to its end.
func TestReading(t *testing.T) {
	for _, n := range []int{0, 1, 100000} {
		var b Latest
		r := Reading(strings.NewReader(strings.Repeat("x", n)), int64(n), b.SetBytes)
		if got := b.Report(); got.Done.Bytes != 0 || got.Total.Bytes != int64(n) {
			t.Errorf("%d bytes, before reading: %+v", n, got)
		}
		if m, err := io.Copy(io.Discard, r); err != nil || m != int64(n) {
			t.Fatalf("copied %d, %v", m, err)
		}
		if got := b.Report(); got.Done.Bytes != int64(n) || got.Total.Bytes != int64(n) {
			t.Errorf("%d bytes, read: %+v", n, got)
		}
	}
}
