package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWaitDisk: a card that shows up late is waited for; two candidates
// fail at once, naming them; none fails after the limit.
func TestWaitDisk(t *testing.T) {
	sys := t.TempDir()
	dev := t.TempDir()
	addDisk := func(name string) {
		os.MkdirAll(filepath.Join(sys, name), 0o755)
		os.WriteFile(filepath.Join(sys, name, "ro"), []byte("0\n"), 0o644)
		os.WriteFile(filepath.Join(sys, name, "size"), []byte("100\n"), 0o644)
	}
	start := time.Now()
	if _, err := waitDisk(sys, "", 300*time.Millisecond); err == nil || !strings.Contains(err.Error(), "no disk to install to") {
		t.Errorf("no disk: %v", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("gave up after %v, want the full 300ms", d)
	}

	// A named disk is waited for until its device node exists.
	named := filepath.Join(dev, "mmcblk1")
	time.AfterFunc(200*time.Millisecond, func() { os.WriteFile(named, nil, 0o644) })
	start = time.Now()
	got, err := waitDisk(sys, named, 5*time.Second)
	if err != nil || got != named {
		t.Errorf("named disk: %q, %v", got, err)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 2*time.Second {
		t.Errorf("returned after %v, want soon after the disk appeared at 200ms", d)
	}

	addDisk("sda")
	addDisk("vdb")
	start = time.Now()
	if _, err := waitDisk(sys, "", 5*time.Second); err == nil || !strings.Contains(err.Error(), "several disks could take the image (sda, vdb)") {
		t.Errorf("two disks: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("two disks: waited %v, want an immediate error", d)
	}
}
