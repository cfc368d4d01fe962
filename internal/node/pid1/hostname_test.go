package pid1

import (
	"errors"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/testenv"
)

// TestSetHostname: the plan's name goes to the kernel; an unidentified
// node leaves it alone; a failing call does not stop the boot
// (SetHostname has no error to stop it with: it logs).
func TestSetHostname(t *testing.T) {
	old := sethostname
	defer func() { sethostname = old }()
	for _, tc := range []struct {
		node    string
		fail    bool
		wantSet string
	}{
		{node: "node01", wantSet: "node01"},
		{node: "node-aabbccddeeff", wantSet: "node-aabbccddeeff"},
		{node: ""},
		{node: "node02", fail: true, wantSet: "node02"},
	} {
		got := ""
		sethostname = func(name string) error {
			got = name
			if tc.fail {
				return errors.New("operation not permitted")
			}
			return nil
		}
		SetHostname(tc.node, func(string, ...any) {})
		if got != tc.wantSet {
			t.Errorf("%q: kernel hostname set to %q, want %q", tc.node, got, tc.wantSet)
		}
	}
}

// TestSethostnameKernel runs the real system call in a UTS namespace of
// its own, so the host keeps its name.
func TestSethostnameKernel(t *testing.T) {
	testenv.NeedRoot(t)
	done := make(chan string)
	go func() {
		// The thread leaves with its namespace: never unlocked, so the
		// runtime ends it with this goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWUTS); err != nil {
			done <- "unshare: " + err.Error()
			return
		}
		SetHostname("node07", t.Logf)
		var u unix.Utsname
		unix.Uname(&u)
		done <- unix.ByteSliceToString(u.Nodename[:])
	}()
	if got := <-done; got != "node07" {
		t.Errorf("kernel hostname %q, want node07", got)
	}
}
