package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/mkimage/mkimage/internal/node/backup"
	"github.com/mkimage/mkimage/internal/node/versions"
)

// backupCommand runs `nodeinit backup SUB`; see commandUsage.
func backupCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, commandUsage)
		return 2
	}
	sub := args[0]
	fs := newFlags("backup "+sub, stderr)
	into := fs.String("into", "", "restore: the directory (on btrfs) to restore into")
	from := fs.String("from", "", "list, restore, restore-container: another node's backups")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	// Progress goes to stderr: stdout is the answer (restore's path,
	// list's names) for scripts.
	logf := progress(stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fail := func(err error) int { return failed(stderr, "backup "+sub, err) }
	if sub == "rollback" {
		if fs.NArg() != 1 {
			fmt.Fprint(stderr, commandUsage)
			return 2
		}
		r, err := versions.RequestRollback("/", "/.snapshots", "/var/lib/mkimage", fs.Arg(0))
		if err != nil {
			return fail(err)
		}
		logf("backup: the next boot rolls the root back to %s; the root it replaces stays as the subvolume %s (keep it until content)",
			r.Snapshot, versions.BeforeRollback(r.Version, r))
		return 0
	}
	cfg, err := backup.LoadConfig("/")
	if err != nil {
		return fail(err)
	}
	n := backup.Node{Root: "/", Config: cfg, Log: logf, From: *from}
	switch sub {
	case "export":
		if fs.NArg() != 0 || *from != "" {
			break
		}
		sums, err := n.ExportAll(ctx)
		for _, s := range sums {
			for _, x := range s.Sent {
				logf("backup: sent %s (%s, %d bytes, %d stored) in %v", x.Name, x.Mode(), x.Bytes, x.Stored, x.Took.Round(1e7))
			}
		}
		if err != nil {
			return fail(err)
		}
		return 0
	case "list":
		if fs.NArg() != 0 {
			break
		}
		ls, err := n.ListAll(ctx)
		for _, l := range ls {
			fmt.Fprintf(stdout, "%s (%s, on %s target %s):\n", l.Subvolume, l.Options.Prefix, l.Kind, l.Options.Target)
			for _, name := range l.Names {
				fmt.Fprintf(stdout, "  %s\n", name)
			}
		}
		if err != nil {
			return fail(err)
		}
		return 0
	case "restore":
		if fs.NArg() != 1 {
			break
		}
		p, err := n.Restore(ctx, fs.Arg(0), *into)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintln(stdout, p)
		return 0
	case "restore-container":
		if fs.NArg() < 1 || fs.NArg() > 2 {
			break
		}
		if err := n.RestoreContainer(ctx, fs.Arg(0), fs.Arg(1)); err != nil {
			return fail(err)
		}
		return 0
	}
	fmt.Fprint(stderr, commandUsage)
	return 2
}
