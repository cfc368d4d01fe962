package main

// Netboot: a diskless root fetched into RAM (root=http://...) and the
// install of a card image (netinstall=...). Both need the network, which
// the initramfs brings up by DHCP; the lease's server is where a URL with
// no host points.

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/node/netinstall"
	"github.com/mkimage/mkimage/internal/node/netroot"
	"github.com/mkimage/mkimage/internal/node/netup"
	"github.com/mkimage/mkimage/internal/node/pid1"
	"github.com/mkimage/mkimage/internal/node/rootdev"
)

// netLog prints a line of the netboot packages.
func netLog(format string, a ...any) {
	say("netboot: "+format, a...)
}

// netUp waits for a NIC and gets a DHCP lease, once.
func (st *state) netUp() (*netup.Lease, error) {
	if st.lease != nil {
		return st.lease, nil
	}
	t := st.cfg.Timeout
	if !waitForNIC("/sys/class/net", t) {
		return nil, fmt.Errorf("no network interface after %v (is the NIC's driver module in the board's modules?)", t)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), t)
	defer cancel()
	l, err := netup.Up(ctx, nil, netLog)
	if err != nil {
		return nil, fmt.Errorf("network: %v (waited %v; nodeinit.timeout= sets the limit)", err, t)
	}
	say("netboot: network up in %v", time.Since(start).Round(time.Millisecond))
	st.lease = l
	return l, nil
}

// netInstall writes the card image named by netinstall= to the node's
// disk, checks it and reboots into it. It returns only on failure; the
// rescue shell then says why.
func netInstall(st *state) error {
	c := st.cfg
	if c.Netinstall == "" {
		return nil
	}
	if c.NetinstallSHA256 == "" {
		return fmt.Errorf("netinstall=%s without netinstall.sha256=<sha256 of the image> on the command line (mkimage netboot writes both)", c.Netinstall)
	}
	l, err := st.netUp()
	if err != nil {
		return err
	}
	disk, err := waitDisk("/sys/block", c.NetinstallDisk, c.Timeout)
	if err != nil {
		return err
	}
	start := time.Now()
	disk, err = netinstall.Install(context.Background(), netinstall.Options{
		URL: c.Netinstall, SHA256: c.NetinstallSHA256, Server: l.Server, Disk: disk, Log: netLog,
	})
	if err != nil {
		return fmt.Errorf("netinstall to %s failed, the card is not bootable until an install succeeds: %w", diskName(disk, c.NetinstallDisk), err)
	}
	say("netboot: installed %s on %s in %v, verified; rebooting into it", c.Netinstall, disk, time.Since(start).Round(time.Millisecond))
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

// waitDisk waits until the disk to install to shows up: the named one,
// or the only candidate (see netinstall.ChooseDisk). Card readers can
// take seconds after their driver loads.
func waitDisk(sysBlock, want string, d time.Duration) (string, error) {
	deadline := time.Now().Add(d)
	for {
		disk, err := netinstall.ChooseDisk(sysBlock, want)
		if err == nil {
			if _, serr := os.Stat(disk); serr == nil {
				say("netboot: installing to %s", disk)
				return disk, nil
			} else {
				err = fmt.Errorf("disk %s: %v", disk, serr)
			}
		}
		if strings.Contains(err.Error(), "several disks") || time.Now().After(deadline) {
			return "", err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// findNetRoot is find-root for a diskless root: the root is on the boot
// server, so bring the network up instead of searching block devices.
func findNetRoot(st *state) error {
	if st.cfg.NetrootSHA256 == "" {
		return fmt.Errorf("root=%s without netroot.sha256=<sha256 of the image> on the command line (mkimage netboot writes both)", st.cfg.Root)
	}
	if _, err := st.netUp(); err != nil {
		return err
	}
	return nil
}

// mountNetRoot is mount-root for a diskless root: fetch the image into
// RAM, check it, loop-mount it on newRoot.
func mountNetRoot(st *state) error {
	flags, data := rootdev.MountOptions(st.cfg.RootFlags)
	start := time.Now()
	dev, err := netroot.Mount(context.Background(), netroot.Options{
		URL: st.cfg.Root, SHA256: st.cfg.NetrootSHA256, Server: st.lease.Server,
		Target: newRoot, FSType: st.cfg.RootFSType, Flags: data, MountFlags: flags, Log: netLog,
	})
	if err != nil {
		return fmt.Errorf("diskless root %s: %w", st.cfg.Root, err)
	}
	st.rootDev = dev
	say("mounted %s on %s (%s, diskless root in RAM, %v)", dev, newRoot, st.cfg.RootFSType, time.Since(start).Round(time.Millisecond))
	return nil
}
