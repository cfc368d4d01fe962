package netinstall

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/node/bootcfg"
	"github.com/mkimage/mkimage/internal/node/netfetch"
	"github.com/mkimage/mkimage/internal/node/netup"
	"github.com/mkimage/mkimage/internal/node/pid1"
)

// Run is nodeinit's netinstall step: with netinstall= on the command
// line it brings the network up by DHCP, writes the card image to the
// node's disk, checks it and reboots into it. It returns only on failure
// (nil without netinstall=); the rescue shell then says why.
func Run(ctx context.Context, c bootcfg.Config, logf func(string, ...any)) error {
	if c.Netinstall == "" {
		return nil
	}
	if c.NetinstallSHA256 == "" {
		return fmt.Errorf("netinstall=%s without netinstall.sha256=<sha256 of the image> on the command line (mkimage netboot writes both)", c.Netinstall)
	}
	l, err := netup.UpWithin("/sys/class/net", c.Timeout, logf)
	if err != nil {
		return err
	}
	disk, err := WaitDisk("/sys/block", c.NetinstallDisk, c.Timeout, logf)
	if err != nil {
		return err
	}
	keys, err := netfetch.BakedKeys(logf)
	if err != nil {
		return err
	}
	start := time.Now()
	f := &netfetch.Fetcher{Log: netup.Logger(logf)}
	err = f.Persist(ctx, "netinstall", func() error {
		_, err := Install(ctx, Options{
			URL: c.Netinstall, SHA256: c.NetinstallSHA256, Server: l.Server, Disk: disk, Keys: keys, Log: f.Log,
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("netinstall to %s failed, the card is not bootable until an install succeeds: %w", diskName(disk, c.NetinstallDisk), err)
	}
	logf("netboot: installed %s on %s in %v, verified; rebooting into it", c.Netinstall, disk, time.Since(start).Round(time.Millisecond))
	err = pid1.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	return fmt.Errorf("installed %s, but reboot failed: %w (power-cycle the node)", disk, err)
}

func diskName(disk, want string) string {
	if disk != "" {
		return disk
	}
	if want != "" {
		return want
	}
	return "the disk"
}

// WaitDisk waits up to d until the disk to install to shows up: the
// named one (want), or the only candidate (see ChooseDisk). Card readers
// can take seconds after their driver loads.
func WaitDisk(sysBlock, want string, d time.Duration, logf func(string, ...any)) (string, error) {
	deadline := time.Now().Add(d)
	for {
		disk, err := ChooseDisk(sysBlock, want)
		if err == nil {
			if _, serr := os.Stat(disk); serr == nil {
				logf("netboot: installing to %s", disk)
				return disk, nil
			} else {
				err = fmt.Errorf("disk %s: %w", disk, serr)
			}
		}
		if strings.Contains(err.Error(), "several disks") || time.Now().After(deadline) {
			return "", err
		}
		time.Sleep(200 * time.Millisecond)
	}
}
