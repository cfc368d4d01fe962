package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/builder"
	"github.com/mkimage/mkimage/internal/build/bundle"
	"github.com/mkimage/mkimage/internal/server/netserve"
	"github.com/mkimage/mkimage/internal/update"
)

func init() {
	register(&command{name: "update", summary: "write a signed update bundle of a version (boot files and the root as a btrfs send stream); update status: every node's versions; update push, pull: bundles in an OCI registry", run: runUpdate})
}

func runUpdate(args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "status":
			return runUpdateStatus(args[1:])
		case "push":
			return runUpdatePush(args[1:])
		case "pull":
			return runUpdatePull(args[1:])
		}
	}
	fs := newFlags("update", "update --board BOARD --key KEY -o DIR [build's input flags]\n       mkimage update status --server URL [--json]\n       mkimage update push BUNDLE_DIR REF --keys FILE\n       mkimage update pull REF DIR --keys FILE")
	var o builder.Options
	inputFlags(fs, &o)
	out := fs.StringP("output", "o", "", "bundle directory to write (replaced as a whole if it holds an earlier bundle)")
	keyPath := fs.String("key", "", "private key that signs the bundle (make one with: mkimage key generate)")
	parents := fs.StringArray("parent", nil, "an earlier bundle directory of this board, signed by the same key: adds root.from-ID, the root as a stream of what changed since it (repeatable)")
	quiet := fs.BoolP("quiet", "q", false, "no progress lines")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usagef("update: unexpected argument %q (flags only; see mkimage update --help)", fs.Arg(0))
	case o.Board == "":
		return usagef("update: --board is required (known boards: %v)", boards.Names())
	case *out == "":
		return usagef("update: -o DIR is required")
	case *keyPath == "":
		return usagef("update: --key is required (make one with: mkimage key generate -o KEY)")
	}
	// Nodes order versions by creation time; builds without
	// SOURCE_DATE_EPOCH all date from 1970.
	if os.Getenv("SOURCE_DATE_EPOCH") == "" {
		return usagef("update: SOURCE_DATE_EPOCH is not set; nodes order versions by it (set it to the build's time, e.g. $(date +%%s), or the last commit's, $(git log -1 --format=%%ct))")
	}
	var err error
	if o.Epoch, err = builder.EpochFromEnv(); err != nil {
		return err
	}
	key, err := update.ReadPrivateKey(*keyPath)
	if err != nil {
		return err
	}
	o.Version = version
	if !*quiet {
		o.Log = os.Stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Parents first: a wrong one fails before the build's long part.
	var from []bundle.Parent
	for _, dir := range *parents {
		p, err := bundle.ReadParent(dir, o.Board, []update.PublicKey{key.Public()})
		if err != nil {
			return fmt.Errorf("--parent %s: %w", dir, err)
		}
		from = append(from, p)
	}
	p, err := builder.Prepare(ctx, o)
	if err != nil {
		return err
	}
	v := &bundle.Version{
		Board: p.Board.Name, Cmdline: p.Cmdline, Created: o.Epoch,
		Kernel: p.Kernel, Initrd: p.Initrd, DTB: p.DTB, Root: p.Root,
	}
	m, err := bundle.Write(*out, v, key, from...)
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s: version %s of %s, signed by %s\n", *out, m.ID, m.Board, key.Public())
	for _, pl := range m.Payloads {
		fmt.Printf("  %-20s %12d  %s\n", pl.Name, pl.Size, pl.SHA256)
	}
	return nil
}

func runUpdateStatus(args []string) error {
	fs := newFlags("update status", "update status --server URL [--json]")
	server := fs.String("server", "", "the mkimage serve --status-dir the nodes report to (the URL in their /etc/mkimage/status-url), e.g. http://build-host:8080")
	asJSON := fs.Bool("json", false, "print the nodes' reports as JSON instead of a table")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usagef("update status: unexpected argument %q (flags only)", fs.Arg(0))
	case *server == "":
		return usagef("update status: --server URL is required (the mkimage serve --status-dir the nodes report to)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reps, err := netserve.FetchStatus(ctx, *server)
	if err != nil {
		return fmt.Errorf("--server: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(reps)
	}
	return printUpdateStatus(os.Stdout, reps, time.Now())
}

// printUpdateStatus writes one row per node: its versions, when its last
// report came, and its bad versions with why the newest failed.
func printUpdateStatus(out io.Writer, reps []update.Received, now time.Time) error {
	if len(reps) == 0 {
		_, err := fmt.Fprintln(out, "no node has reported yet (a node reports after each check and apply once its /etc/mkimage/status-url names this server)")
		return err
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NODE\tRUNNING\tGOOD\tTRYING\tSEEN\tBAD")
	for _, r := range reps {
		s := r.Status
		trying := "-"
		if s.Trying != "" {
			trying = fmt.Sprintf("%s (%d left)", s.Trying, s.Tries)
		}
		var bad []string
		why := ""
		for _, v := range s.Bad() { // oldest first: the last bad is the newest
			bad, why = append(bad, v.ID), v.Why
		}
		badCol := "-"
		if len(bad) > 0 {
			badCol = strings.Join(bad, ", ") + ": " + why
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Node, s.Running, s.Good, trying, ago(now, r.Received), badCol)
	}
	return w.Flush()
}
