package testenv

import (
	"bytes"
	"os/exec"
	"sync"
	"testing"
)

// Output collects what a started process prints; safe to read while it
// runs.
type Output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// Start starts cmd with its stdout and stderr collected, kills it when
// the test ends, and then logs the last 3000 bytes it printed, under
// what, if the test failed.
func Start(t testing.TB, what string, cmd *exec.Cmd) *Output {
	t.Helper()
	out := &Output{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			s := out.String()
			if len(s) > 3000 {
				s = s[len(s)-3000:]
			}
			t.Logf("%s (tail):\n%s", what, s)
		}
	})
	return out
}
