package main

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/mkimage/mkimage/internal/cluster"
	"github.com/mkimage/mkimage/internal/server/netserve"
	"github.com/mkimage/mkimage/internal/server/pxedhcp"
	"github.com/mkimage/mkimage/netboot"
)

func init() {
	register(&command{name: "serve", summary: "serve a netboot directory over TFTP and HTTP, with DHCP for the inventory", run: runServe})
}

func runServe(args []string) error {
	fs := newFlags("serve", "serve DIR [--listen ADDR] [--dhcp full|proxy|off] [--config cluster.toml] [--any] [--status-dir SDIR]")
	var listen, mode, config, statusDir string
	var any bool
	var tftpPort, httpPort int
	fs.StringVar(&listen, "listen", "", "this server's IPv4 address on the provisioning network (required with DHCP; default: all addresses)")
	fs.StringVar(&mode, "dhcp", "off", "full: the only DHCP server of an isolated network (hands out inventory addresses); proxy: beside an existing DHCP server (PXE proxyDHCP); off")
	fs.StringVar(&config, "config", "", "cluster config (TOML): the inventory (MAC, address, name) and subnet/gateway/dns for full DHCP")
	fs.BoolVar(&any, "any", false, "answer DHCP from MACs outside the inventory too (full mode leases them free addresses)")
	fs.IntVar(&tftpPort, "tftp-port", 69, "TFTP port (U-Boot only uses 69)")
	fs.IntVar(&httpPort, "http-port", 80, "HTTP port (must match mkimage netboot --http-port)")
	fs.StringVar(&statusDir, "status-dir", "", "take the nodes' status reports (POST /status/NODE, from nodes whose /etc/mkimage/status-url names this server) and keep each node's last one and pinned key here; read them with mkimage update status or fleet status. With --config, only the inventory's nodes may report")
	maxRebooting := fs.Int("max-rebooting", 0, "with --status-dir: reboot leases held at once, so no more nodes reboot together (default: the config's [rollout] max_rebooting, else 4)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want one directory (written by mkimage netboot -o DIR)")
	}
	o := netserve.Options{Dir: fs.Arg(0), TFTPPort: tftpPort, HTTPPort: httpPort, StatusDir: statusDir, MaxRebooting: *maxRebooting, Log: log.New(os.Stderr, "", log.LstdFlags)}
	var cfg *cluster.Config
	if config != "" {
		var err error
		if cfg, err = cluster.Load(config); err != nil {
			return err
		}
		// The inventory registers the nodes: others may not report.
		for _, n := range cfg.Nodes {
			o.Inventory = append(o.Inventory, string(n.Name))
		}
		if o.MaxRebooting == 0 {
			_, o.MaxRebooting = cfg.RolloutWaves()
		}
	}
	if o.MaxRebooting == 0 {
		o.MaxRebooting = cluster.DefaultMaxRebooting
	}
	if listen != "" {
		a, err := netip.ParseAddr(listen)
		if err != nil || !a.Is4() {
			return usagef("--listen %q: want an IPv4 address of this host", listen)
		}
		o.Addr = a
	}
	switch mode {
	case "off":
		if any {
			return usagef("--any needs --dhcp full or proxy")
		}
	case "full", "proxy":
		c := &pxedhcp.Config{Mode: pxedhcp.Mode(mode), BootFile: netboot.ScriptFile, Any: any}
		if listen == "" {
			return usagef("--dhcp %s needs --listen ADDR (the next-server address nodes fetch from)", mode)
		}
		if config == "" && !any {
			return usagef("--dhcp %s needs --config (the inventory) or --any", mode)
		}
		if cfg != nil {
			c.Subnet = cfg.Network.Subnet.Prefix
			c.Gateway = cfg.Network.Gateway.Addr
			for _, d := range cfg.Network.DNS {
				c.DNS = append(c.DNS, d.Addr)
			}
			c.Domain = string(cfg.Cluster.Domain)
			hosts, err := cfg.Hosts() // a node without a MAC has nothing to reserve by
			if err != nil {
				return fmt.Errorf("%s: %w", config, err)
			}
			for _, h := range hosts {
				c.Hosts = append(c.Hosts, pxedhcp.Host{Name: h.Name, MAC: h.MAC, IP: h.IP})
			}
		}
		if !c.Subnet.IsValid() {
			p, err := netserve.PrefixOf(o.Addr)
			if err != nil {
				return err
			}
			c.Subnet = p
		}
		o.DHCP = c
	default:
		return usagef("--dhcp %q: want full, proxy or off", mode)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return netserve.Run(ctx, o)
}
