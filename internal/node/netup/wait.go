package netup

import (
	"context"
	"fmt"
	"os"
	"time"
)

// WaitForNIC waits until dir (/sys/class/net) lists an interface other
// than lo (drivers may register theirs after the module loaded) or d
// passes; it says whether one showed up.
func WaitForNIC(dir string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if e.Name() != "lo" {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// UpWithin is nodeinit's way onto the network for netboot: it waits up
// to d (nodeinit.timeout=) for a NIC in sysNet (/sys/class/net), then as
// long again for a DHCP lease on any. logf gets console lines as nodeinit
// prints them; netup's own go through Logger.
func UpWithin(sysNet string, d time.Duration, logf func(string, ...any)) (*Lease, error) {
	if !WaitForNIC(sysNet, d) {
		return nil, fmt.Errorf("no network interface after %v (is the NIC's driver module in the board's modules?)", d)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	l, err := Up(ctx, nil, Logger(logf))
	if err != nil {
		return nil, fmt.Errorf("network: %w (waited %v; nodeinit.timeout= sets the limit)", err, d)
	}
	logf("netboot: network up in %v", time.Since(start).Round(time.Millisecond))
	return l, nil
}

// Logger returns logf with "netboot: " before each line: the netboot
// packages (netup, netfetch, netroot, netinstall) log bare lines, which
// nodeinit's console shows as "nodeinit: netboot: ...".
func Logger(logf func(string, ...any)) func(string, ...any) {
	return func(format string, a ...any) { logf("netboot: "+format, a...) }
}
