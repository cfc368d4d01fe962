package main

import (
	"os"

	"github.com/mkimage/mkimage/builder"
)

func init() {
	register(&command{name: "inspect", summary: "show an image's partitions, bootloader bytes and boot files", run: runInspect})
}

func runInspect(args []string) error {
	fs := newFlags("inspect", "inspect IMAGE [--board B] [--json]")
	board := fs.String("board", "", "check this board's bootloader regions (default: the board recorded in the image)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want exactly one IMAGE")
	}
	ins, err := builder.Inspect(fs.Arg(0), *board)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(ins)
	}
	ins.Print(os.Stdout)
	return nil
}
