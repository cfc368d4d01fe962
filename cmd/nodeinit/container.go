package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/mkimage/mkimage/internal/cluster/plan"
	"github.com/mkimage/mkimage/internal/node/backup"
	"github.com/mkimage/mkimage/internal/node/policy"
)

// containerCommand runs `nodeinit container SUB`; see commandUsage.
func containerCommand(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, commandUsage)
		return 2
	}
	sub := args[0]
	fs := newFlags("container "+sub, stderr)
	pass := fs.Int("pass", 1, "send, receive: the move's pass, 1 (while it runs) or 2 (after it stopped)")
	live := fs.Bool("live", false, "send --pass 2: checkpoint the running container with CRIU instead of stopping it (stopped if CRIU cannot)")
	root := fs.String("root", "/", "the node's root (tests)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	logf := progress(stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fail := func(err error) int { return failed(stderr, "container "+sub, err) }
	n := backup.Node{Root: *root, Log: logf}
	name := fs.Arg(0)
	switch {
	case sub == "send" && fs.NArg() == 1:
		// The stream is stdout: buffered, flushed before the exit.
		w := bufio.NewWriterSize(stdout, 1<<20)
		m, err := n.SendMove(ctx, name, backup.Pass(*pass), w, backup.SendOptions{Live: *live, Stopping: func() { fmt.Fprintln(stderr, plan.MoveStopping) }})
		if m.NotLive != "" {
			fmt.Fprintln(stderr, plan.MoveNotLive+m.NotLive)
		}
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			return fail(err)
		}
		logf("move: container %s pass %d sent: %d bytes in %v", name, m.Pass, m.Bytes, m.Took.Round(1e6))
		return 0
	case sub == "receive" && fs.NArg() == 1:
		m, err := n.ReceiveMove(ctx, name, backup.Pass(*pass), bufio.NewReaderSize(stdin, 1<<20))
		if err != nil {
			return fail(err)
		}
		logf("move: container %s pass %d received: %d bytes in %v", name, m.Pass, m.Bytes, m.Took.Round(1e6))
		if m.Pass == backup.Last {
			in, err := n.InstallMove(ctx, name, func() { fmt.Fprintln(stderr, plan.MoveInstalled) })
			if in.NotLive != "" {
				fmt.Fprintln(stderr, plan.MoveNotLive+in.NotLive)
			}
			if err != nil {
				return fail(err)
			}
			if in.Live {
				fmt.Fprintln(stderr, plan.MoveLive)
			}
			fmt.Fprintln(stderr, plan.MoveStarted+strconv.FormatBool(in.Started))
		}
		return 0
	case sub == "abort" && fs.NArg() == 1:
		if err := n.AbortMove(ctx, name); err != nil {
			return fail(err)
		}
		return 0
	case sub == "finish" && fs.NArg() == 1:
		if err := n.FinishMove(name); err != nil {
			return fail(err)
		}
		return 0
	case sub == "place" && fs.NArg() == 2:
		// Policy's lines name nodeinit themselves, as at boot.
		env := policy.Env{Root: *root, Proc: "/proc", Sys: "/sys", Log: func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }}
		if err := policy.PlaceContainer(env, name, fs.Arg(1)); err != nil {
			return fail(err)
		}
		return 0
	}
	fmt.Fprint(stderr, commandUsage)
	return 2
}
