package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/mkimage/mkimage/internal/cachedir"

	"github.com/mkimage/mkimage/internal/bytesize"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/builder"
	"github.com/mkimage/mkimage/internal/cluster"
	"github.com/mkimage/mkimage/internal/update"
	"github.com/mkimage/mkimage/netboot"
)

func init() {
	register(&command{name: "netboot", summary: "write the files U-Boot's PXE flow and the netboot modes fetch (serve them with mkimage serve)", run: runNetboot})
}

func runNetboot(args []string) error {
	fs := newFlags("netboot", "netboot --board BOARD [--config cluster.toml] -o DIR [flags]")
	var o builder.Options
	var out, defMode, headroom, keyPath string
	var port int
	var quiet bool
	fs.StringVarP(&o.Board, "board", "b", "", "board to netboot (list them with: mkimage boards)")
	fs.StringVarP(&out, "output", "o", "", "directory to write (replaced as a whole if it is an earlier netboot tree)")
	fs.StringVar(&o.Config, "config", "", "cluster config (TOML): one pxelinux.cfg/01-<mac> per node, baked into the initramfs")
	fs.StringVar(&o.Kernel, "kernel", "", "Debian arm64 kernel .deb or a directory with Image, dtbs/, lib/modules/ (default: Debian bookworm's current arm64 kernel)")
	fs.StringVar(&o.Rootfs, "rootfs", builder.DefaultRootfs, "root filesystem: debian[:SUITE], minimal (busybox; small for diskless nodes), a directory or a tarball")
	fs.BoolVar(&o.Slim, "slim", false, slimHelp)
	fs.StringArrayVar(&o.Overlays, "overlay", nil, "directory or tarball laid over the root (repeatable)")
	fs.StringVar(&o.Initramfs, "initramfs", "", "use this initramfs instead of building one")
	fs.StringSliceVar(&o.Bootloader, "bootloader", nil, "the board's bootloader file(s), for the install image (as for mkimage build)")
	fs.StringVar(&defMode, "default-mode", "diskless", "mode of the default pxelinux files and of nodes with no netboot mode: diskless or install")
	fs.IntVar(&port, "http-port", 80, "HTTP port of mkimage serve, written into the kernel command lines")
	fs.StringVar(&headroom, "root-headroom", "64MiB", "free space in the diskless root (held in the node's RAM)")
	fs.StringVar(&o.NetbootKeys, "update-key", "", "public key file (from mkimage key generate) baked into the initramfs: the nodes then take only a root or card image the tree's signed images.json lists, never the unsigned sums (needs --key). Without it, the nodes check the sha256 on the kernel command line, which comes over the same unauthenticated network")
	fs.StringVar(&keyPath, "key", "", "private key that signs images.json (one of --update-key's keys)")
	fs.StringVar(&o.CacheDir, "cache-dir", cachedir.Root(), "cache for downloads and built artifacts")
	fs.BoolVarP(&quiet, "quiet", "q", false, "no progress lines")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (flags only; see mkimage netboot --help)", fs.Arg(0))
	}
	if o.Board == "" {
		return usagef("--board is required (known boards: %v)", boards.Names())
	}
	if out == "" {
		return usagef("-o DIR is required")
	}
	if (keyPath == "") != (o.NetbootKeys == "") {
		return usagef("--update-key and --key go together: the public keys the nodes trust and the private key that signs the tree")
	}
	mode, err := netboot.ParseMode(defMode)
	if err != nil {
		return usagef("--default-mode: %v", err)
	}
	if port < 1 || port > 65535 {
		return usagef("--http-port %d: want 1-65535", port)
	}
	no := netboot.Options{Default: mode, HTTPPort: port, Board: o.Board}
	if keyPath != "" {
		k, err := update.ReadPrivateKey(keyPath)
		if err != nil {
			return fmt.Errorf("--key: %w", err)
		}
		no.Key = &k
	}
	if no.RootHeadroom, err = bytesize.Parse(headroom); err != nil {
		return usagef("--root-headroom: %v", err)
	}
	if o.Config != "" {
		cfg, err := cluster.Load(o.Config)
		if err != nil {
			return err
		}
		hosts, err := cfg.Hosts() // nodes named by a serial only get the default mode
		if err != nil {
			return fmt.Errorf("%s: %w", o.Config, err)
		}
		for _, h := range hosts {
			no.Nodes = append(no.Nodes, netboot.Node{Name: h.Name, MAC: h.MAC, Mode: netboot.Mode(h.Netboot)})
		}
	}
	if o.Epoch, err = builder.EpochFromEnv(); err != nil {
		return err
	}
	no.Epoch = o.Epoch
	o.Version = version
	if !quiet {
		o.Log = os.Stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	p, err := builder.Prepare(ctx, o)
	if err != nil {
		return err
	}
	no.SoC, no.PXEDefaults, no.UBoot, no.Trusted = p.Board.SoC, p.Board.PXEDefaults, p.Board.Netboot, p.NetbootKeys
	no.Kernel, no.Initrd, no.Cmdline, no.Root = p.Kernel, p.Initrd, p.Cmdline, p.Root
	if p.DTB != nil {
		no.DTB, no.DTBPath = p.DTB, p.Board.DTB
	}
	if _, install := no.Modes(); install {
		// The card image is built beside the output and moved in.
		tmp, err := os.MkdirTemp(filepath.Dir(filepath.Clean(out)), ".netboot-card-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		card := filepath.Join(tmp, netboot.CardImage)
		if _, err := p.Write(ctx, card); err != nil {
			return err
		}
		no.Card = card
	}
	res, err := netboot.Write(out, no)
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s: %d files, %d nodes, defaults %v (%s)\n", out, len(res.Files), len(res.Nodes), res.Defaults, mode)
	if no.Key != nil {
		fmt.Printf("  images signed by %s\n", no.Key.Public())
	}
	for m, c := range res.Cmdlines {
		fmt.Printf("  %s: %s\n", m, c)
	}
	return nil
}
