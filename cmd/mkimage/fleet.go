package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mkimage/mkimage/internal/cluster"
	"github.com/mkimage/mkimage/internal/fleet"
	"github.com/mkimage/mkimage/internal/server/netserve"
	"github.com/mkimage/mkimage/internal/update"
	"github.com/mkimage/mkimage/internal/update/registry"
)

func init() {
	register(&command{name: "fleet", summary: "fleet status: every inventory node's versions; fleet rollout: move a channel to a version, wave by wave", run: runFleet})
}

func runFleet(args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "status":
			return runFleetStatus(args[1:])
		case "rollout":
			return runFleetRollout(args[1:])
		}
	}
	fs := newFlags("fleet", "fleet status --config cluster.toml --server URL [--json]\n       mkimage fleet rollout --config cluster.toml --server URL --key KEY --channel-file PATH --version ID --source SRC")
	if err := parse(fs, args); err != nil {
		return err
	}
	return usagef("fleet: want status or rollout")
}

func runFleetStatus(args []string) error {
	fs := newFlags("fleet status", "fleet status --config cluster.toml --server URL [--json]")
	config := fs.String("config", "", "cluster config (TOML): the inventory, one row per node")
	server := fs.String("server", "", "the mkimage serve --status-dir the nodes report to (the URL in their /etc/mkimage/status-url), e.g. http://build-host:8080")
	asJSON := fs.Bool("json", false, "print the rows as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := fleetArgs("fleet status", fs.Args(), *config, *server)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reps, err := netserve.FetchStatus(ctx, *server)
	if err != nil {
		return fmt.Errorf("--server: %w", err)
	}
	rows := fleet.Status(cfg, reps)
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	now := time.Now()
	return fleet.Print(os.Stdout, rows, func(t time.Time) string { return ago(now, t) })
}

func runFleetRollout(args []string) error {
	fs := newFlags("fleet rollout", "fleet rollout --config cluster.toml --server URL --key KEY (--channel-file PATH | --channel-ref REF) --version ID --source SRC [--poll D]")
	config := fs.String("config", "", "cluster config (TOML): the inventory and its [rollout] waves, max_failures, min_soak, max_rebooting")
	server := fs.String("server", "", "the mkimage serve --status-dir the nodes report to, e.g. http://build-host:8080")
	keyPath := fs.String("key", "", "private key that signs the channel (the one that signs the bundles: nodes check both with their update keys)")
	channelFile := fs.String("channel-file", "", "the channel file to write, under the directory mkimage serve serves (the nodes' --channel-url names it over HTTP)")
	channelRef := fs.String("channel-ref", "", "instead of --channel-file: the registry tag to publish the channel to, HOST/REPO:TAG (the nodes' --channel-url is oci://HOST/REPO:TAG)")
	reg := addRegistryFlags(fs, "")
	channel := fs.String("channel", "", "name of a new channel (default: the cluster's name)")
	version := fs.String("version", "", "the version id to roll out (mkimage update prints it)")
	source := fs.String("source", "", "where the nodes get the version: the bundle's URL, e.g. http://build-host:8080/v2/ (may be left out to resume)")
	poll := fs.Duration("poll", 15*time.Second, "how often the status server is asked")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := fleetArgs("fleet rollout", fs.Args(), *config, *server)
	if err != nil {
		return err
	}
	switch {
	case *keyPath == "":
		return usagef("fleet rollout: --key is required (the private key the bundles are signed with)")
	case (*channelFile == "") == (*channelRef == ""):
		return usagef("fleet rollout: give one of --channel-file (a file under the directory mkimage serve serves) and --channel-ref (a registry tag)")
	case *version == "":
		return usagef("fleet rollout: --version ID is required")
	}
	key, err := update.ReadPrivateKey(*keyPath)
	if err != nil {
		return fmt.Errorf("--key: %w", err)
	}
	var pub fleet.Publisher = fleet.FilePublisher{Path: *channelFile}
	if *channelRef != "" {
		// HOST/REPO:TAG, or the URL the nodes are given.
		ref, plain, isOCI, err := registry.ParseURL(*channelRef)
		if !isOCI {
			ref, err = registry.ParseRef(*channelRef)
		}
		if err != nil {
			return usagef("fleet rollout: --channel-ref: %v", err)
		}
		c, err := reg.client()
		if err != nil {
			return err
		}
		c.PlainHTTP = c.PlainHTTP || plain
		pub = fleet.RegistryPublisher{Client: c, Ref: ref}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return fleet.Rollout(ctx, fleet.Options{Config: cfg, Server: *server, Key: key, Publisher: pub,
		Channel: *channel, Version: *version, Source: *source, Poll: *poll, Out: os.Stdout})
}

// fleetArgs checks what both subcommands need and loads the config.
func fleetArgs(name string, rest []string, config, server string) (*cluster.Config, error) {
	switch {
	case len(rest) > 0:
		return nil, usagef("%s: unexpected argument %q (flags only)", name, rest[0])
	case config == "":
		return nil, usagef("%s: --config cluster.toml is required (the inventory)", name)
	case server == "":
		return nil, usagef("%s: --server URL is required (the mkimage serve --status-dir the nodes report to)", name)
	}
	return cluster.Load(config)
}
