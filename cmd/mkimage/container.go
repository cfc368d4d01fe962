package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mkimage/mkimage/internal/bytesize"
	"github.com/mkimage/mkimage/internal/cluster"
	"github.com/mkimage/mkimage/internal/fleet"
)

func init() {
	register(&command{name: "container", summary: "container move: move a container to another node over SSH, its address and ingress route following", run: runContainer})
}

func runContainer(args []string) error {
	if len(args) > 0 && args[0] == "move" {
		return runContainerMove(args[1:])
	}
	fs := newFlags("container", "container move --config cluster.toml [--from NODE] NAME NODE")
	if err := parse(fs, args); err != nil {
		return err
	}
	return usagef("container: want move")
}

func runContainerMove(args []string) error {
	fs := newFlags("container move", "container move --config cluster.toml [--from NODE] [--live] [--ssh CMD] [--user USER] NAME NODE")
	config := fs.String("config", "", "cluster config (TOML): the nodes' addresses, the container and where the config places it")
	from := fs.String("from", "", "the node the container runs on (default: the config's node; give it once a move took it elsewhere)")
	sshCmd := fs.String("ssh", "ssh", "the ssh command and its options, split on spaces, e.g. \"ssh -i fleet_ed25519\"")
	user := fs.String("user", "root", "the user to log in as on the nodes (one of the cluster's ssh_authorized_keys)")
	live := fs.Bool("live", false, "checkpoint the running container with CRIU and restore it on NODE (its processes and memory go on); moved cold where CRIU cannot, and the output says why")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() != 2:
		return usagef("container move: want NAME NODE, the container and the node to move it to")
	case *config == "":
		return usagef("container move: --config cluster.toml is required (the nodes' addresses)")
	}
	cfg, err := cluster.Load(*config)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m := &fleet.Move{
		Baked: cfg.Bake(), Container: fs.Arg(0), From: *from, To: fs.Arg(1),
		SSH: strings.Fields(*sshCmd), User: *user, Live: *live,
		Log: func(format string, a ...any) { fmt.Fprintf(os.Stderr, "mkimage: "+format+"\n", a...) },
	}
	r, err := m.Run(ctx)
	if r.Last > 0 || len(r.Placed) > 0 {
		fmt.Printf("%s: %s -> %s: first pass %s in %v, last pass %s in %v\n", m.Container, r.From, r.To,
			bytesize.Format(r.First), r.FirstTook.Round(time.Millisecond), bytesize.Format(r.Last), r.LastTook.Round(time.Millisecond))
		if r.NotLive != "" {
			fmt.Printf("not live: %s\n", r.NotLive)
		}
		how := "started"
		if r.Live {
			how = "restored live"
		}
		if r.Ran {
			fmt.Printf("down %v (stopped on %s, %s on %s); routed through the gateways after %v\n", r.Down.Round(time.Millisecond), r.From, how, r.To, r.Routed.Round(time.Millisecond))
		} else {
			fmt.Printf("it was not running, and is not started on %s\n", r.To)
		}
		if len(r.Placed) > 0 {
			fmt.Printf("placement recorded on %s\n", strings.Join(r.Placed, ", "))
		}
	}
	return err
}
