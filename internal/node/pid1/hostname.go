package pid1

import "golang.org/x/sys/unix"

// sethostname is the system call; tests replace it.
var sethostname = func(name string) error { return unix.Sethostname([]byte(name)) }

// SetHostname gives the kernel the node's name before switch_root, at
// every boot: systemd reads /etc/hostname itself, but a busybox or
// sysvinit root that does not would run as "(none)". The name is the
// plan's (first boot wrote the same to /etc/hostname), so a card moved to
// another board has its new name from the first moment. An unidentified
// node (name "") keeps whatever the kernel has. A failure is logged: it
// never stops the boot.
func SetHostname(name string, logf func(string, ...any)) {
	if name == "" {
		return
	}
	if err := sethostname(name); err != nil {
		logf("hostname: %s not set: %v", name, err)
		return
	}
	logf("hostname: %s", name)
}
