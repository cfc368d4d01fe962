package main

import "golang.org/x/sys/unix"

// sethostname is the system call; tests replace it.
var sethostname = func(name string) error { return unix.Sethostname([]byte(name)) }

// setHostname gives the kernel the node's name before switch_root, at
// every boot: systemd reads /etc/hostname itself, but a busybox or
// sysvinit root that does not would run as "(none)". The name is the
// plan's (first boot wrote the same to /etc/hostname), so a card moved to
// another board has its new name from the first moment. An unidentified
// node keeps whatever the kernel has. It never stops the boot.
func setHostname(st *state) error {
	name := st.node.Name
	if name == "" {
		return nil
	}
	if err := sethostname(name); err != nil {
		say("hostname: %s not set: %v", name, err)
		return nil
	}
	say("hostname: %s", name)
	return nil
}
