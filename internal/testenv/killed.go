package testenv

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// KillAt is a step hook for a child test process (see RunKilled): at
// step it kills the process with SIGKILL, stopping it as a power cut
// would, with nothing deferred run.
func KillAt(step string) func(string) {
	return func(s string) {
		if s == step {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
}

// RunKilled runs the test function child of this test binary, with env
// ("KEY=VALUE") added to the environment, and fails t unless SIGKILL
// ended it (the child's KillAt).
func RunKilled(t testing.TB, child string, env ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+child+"$", "-test.v")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("%s %v: %v, want it killed\n%s", child, env, err, out)
	}
}
