// Command nodeinit is PID 1 of a node's initramfs (linux/arm64). It mounts
// the kernel filesystems, loads the modules the builder listed, finds and
// mounts the btrfs root and switches into the root's init. Any failure
// prints what failed and why and starts a rescue shell on the console: a
// node must never hang silently or panic the kernel.
//
// Every line it prints starts with "nodeinit: " so tests and people can
// grep the console.
//
// It runs inside u-root's busybox; keep it small and never import the
// builder.
package main

import (
	"fmt"
	"os"
	"time"
)

// Paths inside the initramfs that the builder writes (see package
// initramfs).
const (
	modulesList  = "/etc/nodeinit/modules" // module files, load order
	defaultsFile = "/etc/nodeinit/cmdline" // baked defaults, kernel command line syntax
	newRoot      = "/newroot"
	rescueShell  = "/bbin/gosh"
)

// state is what the steps share.
type state struct {
	cfg     config
	rootDev string // e.g. /dev/vda2
}

// step is one named stage of the boot. Later work (first boot, policy)
// adds steps between "mount-root" and "switch-root"; each must be safe to
// repeat after a power cut.
type step struct {
	name string
	run  func(*state) error
}

var steps = []step{
	{"mount-early", mountEarly},
	{"config", readConfig},
	{"modules", loadModules},
	{"find-root", findRoot},
	{"mount-root", mountRoot},
	{"switch-root", switchRoot},
}

func main() {
	say("starting (pid %d)", os.Getpid())
	st := &state{cfg: defaultConfig()}
	start := time.Now()
	for _, s := range steps {
		if err := s.run(st); err != nil {
			rescue(fmt.Sprintf("step %s failed: %v", s.name, err))
		}
	}
	// switchRoot only returns on failure.
	rescue(fmt.Sprintf("switch-root returned after %v", time.Since(start)))
}

// say prints one console line.
func say(format string, a ...any) {
	fmt.Fprintf(os.Stdout, "nodeinit: "+format+"\n", a...)
}
