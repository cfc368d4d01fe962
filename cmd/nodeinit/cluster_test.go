package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWaitForNIC: lo alone is not enough; a NIC registered late is
// waited for, up to the limit.
func TestWaitForNIC(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "lo"), 0o755)
	start := time.Now()
	if waitForNIC(dir, 300*time.Millisecond) {
		t.Error("lo alone counted as a NIC")
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("returned after %v with only lo, want the full 300ms", d)
	}
	time.AfterFunc(200*time.Millisecond, func() { os.Mkdir(filepath.Join(dir, "eth0"), 0o755) })
	start = time.Now()
	if !waitForNIC(dir, 5*time.Second) {
		t.Error("eth0 not seen")
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 2*time.Second {
		t.Errorf("returned after %v, want soon after eth0 appeared at 200ms", d)
	}
}
