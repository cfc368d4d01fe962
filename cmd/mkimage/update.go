package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/builder"
	"github.com/mkimage/mkimage/internal/build/bundle"
	"github.com/mkimage/mkimage/internal/update"
)

func init() {
	register(&command{name: "update", summary: "write a signed update bundle of a version (boot files and the root as a btrfs send stream)", run: runUpdate})
}

func runUpdate(args []string) error {
	fs := newFlags("update", "update --board BOARD --key KEY -o DIR [build's input flags]")
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
