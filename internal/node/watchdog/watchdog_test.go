package watchdog

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeDev records what the Dog does to the device.
type fakeDev struct {
	mu  sync.Mutex
	ops []string
}

func (f *fakeDev) keepalive() error { f.add("keepalive"); return nil }
func (f *fakeDev) close() error     { f.add("close"); return nil }

func (f *fakeDev) add(op string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = append(f.ops, op)
}

func (f *fakeDev) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ops...)
}

type logger struct {
	mu    sync.Mutex
	lines []string
}

func (l *logger) say(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, a...))
}

func (l *logger) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// TestFeedAndHandOver: the Dog feeds while the steps run; the hand-over
// feeds once more, then closes, and nothing feeds after that.
func TestFeedAndHandOver(t *testing.T) {
	dev := &fakeDev{}
	var log logger
	d := start("/dev/watchdog0 (test)", 300*time.Millisecond, dev, log.say)
	time.Sleep(350 * time.Millisecond) // about three ticks of 100ms
	fed := len(dev.list())
	if fed < 2 {
		t.Fatalf("fed %d times in 350ms with a 300ms timeout, want at least 2", fed)
	}
	d.HandOver("the root's init")
	d.HandOver("the rescue shell") // a second hand-over does nothing
	ops := dev.list()
	if n := len(ops); n < 2 || ops[n-2] != "keepalive" || ops[n-1] != "close" {
		t.Fatalf("ops after hand-over end %q, want keepalive then close", ops)
	}
	time.Sleep(250 * time.Millisecond)
	if after := dev.list(); len(after) != len(ops) {
		t.Errorf("fed after the hand-over: %q", after[len(ops):])
	}
	if s := log.String(); strings.Count(s, "handed over") != 1 || !strings.Contains(s, "handed over to the root's init, still armed") {
		t.Errorf("log:\n%s", s)
	}
}

func TestNilDog(t *testing.T) {
	var d *Dog
	d.HandOver("the root's init") // must not panic
}

// TestArmWithoutDevice: not asked, too long, no device, or a node that
// is no watchdog: Arm says why (or nothing when not asked) and the boot
// goes on.
func TestArmWithoutDevice(t *testing.T) {
	dir := t.TempDir()
	missing := []string{filepath.Join(dir, "watchdog0"), filepath.Join(dir, "watchdog")}
	notWatchdog := filepath.Join(dir, "plain")
	if err := os.WriteFile(notWatchdog, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		devs    []string
		timeout time.Duration
		want    string
	}{
		{"not asked", missing, 0, ""},
		{"too long", missing, 2 * time.Hour, "watchdog: timeout 2h0m0s is more than 1h0m0s: not armed"},
		{"no device", missing, 15 * time.Second, "watchdog: no watchdog device (" + missing[0] + ", " + missing[1] + "; a board without one, or its driver did not load): going on without"},
		{"not a watchdog", []string{notWatchdog}, 15 * time.Second, "watchdog: " + notWatchdog + ": setting the timeout to 15 s: inappropriate ioctl for device: going on without a watchdog"},
	} {
		var log logger
		if d := Arm(tt.devs, tt.timeout, log.say); d != nil {
			t.Errorf("%s: armed %+v", tt.name, d)
		}
		if got := log.String(); got != tt.want {
			t.Errorf("%s: said %q, want %q", tt.name, got, tt.want)
		}
	}
	// The failed arm wrote the magic 'V' (stop, where the device had
	// started) and nothing else.
	if b, _ := os.ReadFile(notWatchdog); string(b) != "V" {
		t.Errorf("%s holds %q after a failed arm, want \"V\"", notWatchdog, b)
	}
}

func TestFeedEvery(t *testing.T) {
	for timeout, want := range map[time.Duration]time.Duration{
		15 * time.Second: 5 * time.Second, 60 * time.Second: 20 * time.Second, 200 * time.Millisecond: 100 * time.Millisecond,
	} {
		if got := feedEvery(timeout); got != want {
			t.Errorf("feedEvery(%v) = %v, want %v", timeout, got, want)
		}
	}
}
