package netroot

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/mkimage/mkimage/internal/node/bootcfg"
	"github.com/mkimage/mkimage/internal/node/netfetch"
	"github.com/mkimage/mkimage/internal/node/netup"
	"github.com/mkimage/mkimage/internal/node/rootdev"
)

// FindRoot is nodeinit's find-root step for a diskless root: the root is
// on the boot server, so it brings the network up (the lease names the
// server) instead of searching block devices.
func FindRoot(c bootcfg.Config, logf func(string, ...any)) (*netup.Lease, error) {
	if c.NetrootSHA256 == "" {
		return nil, fmt.Errorf("root=%s without netroot.sha256=<sha256 of the image> on the command line (mkimage netboot writes both)", c.Root)
	}
	return netup.UpWithin("/sys/class/net", c.Timeout, logf)
}

// MountRoot is nodeinit's mount-root step for a diskless root: it
// fetches the image from server into RAM, checks it and loop-mounts it
// on dir. It returns the loop device.
func MountRoot(ctx context.Context, c bootcfg.Config, server netip.Addr, dir string, logf func(string, ...any)) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	flags, data := rootdev.MountOptions(c.RootFlags)
	keys, err := netfetch.BakedKeys(logf)
	if err != nil {
		return "", err
	}
	start := time.Now()
	f := &netfetch.Fetcher{Log: netup.Logger(logf)}
	var dev string
	err = f.Persist(ctx, "diskless root", func() (err error) {
		dev, err = Mount(ctx, Options{
			URL: c.Root, SHA256: c.NetrootSHA256, Server: server, Keys: keys,
			Target: dir, FSType: c.RootFSType, Flags: data, MountFlags: flags, Log: f.Log,
		})
		return err
	})
	if err != nil {
		return "", fmt.Errorf("diskless root %s: %w", c.Root, err)
	}
	logf("mounted %s on %s (%s, diskless root in RAM, %v)", dev, dir, c.RootFSType, time.Since(start).Round(time.Millisecond))
	return dev, nil
}
