package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"github.com/vishvananda/netns"
)

// NewNetns makes a network namespace for a test, named
// "mk-<tag>-<pid>", and removes it when the test ends. Tests that use it
// need root (NeedRoot) and ip (NeedTools).
func NewNetns(t testing.TB, tag string) string {
	t.Helper()
	name := fmt.Sprintf("mk-%s-%d", tag, os.Getpid())
	Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	return name
}

// InNetns runs f on a new OS thread inside network namespace name and
// returns f's error. The thread stays locked, so Go discards it afterwards
// instead of reusing a thread that sits in another namespace; sockets f
// opens stay in that namespace.
func InNetns(name string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromName(name)
		if err != nil {
			errc <- fmt.Errorf("namespace %s: %w", name, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- fmt.Errorf("entering namespace %s: %w", name, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}
