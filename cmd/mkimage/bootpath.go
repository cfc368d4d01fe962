package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/mkimage/mkimage/internal/cachedir"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/builder"
)

func init() {
	register(&command{name: "bootpath", summary: "show every driver a board's boot devices need, from its device tree and the kernel", run: runBootPath})
}

func runBootPath(args []string) error {
	fs := newFlags("bootpath", "bootpath --board BOARD [--kernel DEB|DIR] [--kernel-src SRC] [--json]")
	var o builder.Options
	fs.StringVarP(&o.Board, "board", "b", "", "board to check ("+strings.Join(boards.Names(), ", ")+")")
	fs.StringVar(&o.Kernel, "kernel", "", "Debian arm64 kernel .deb, or a directory from mkimage kernel (default: Debian bookworm's current arm64 kernel, fetched)")
	fs.StringVar(&o.CacheDir, "cache-dir", cachedir.Root(), "cache for downloads")
	src := fs.String("kernel-src", "", "kernel source directory or tarball: name the Kconfig symbol of each missing driver")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	quiet := fs.BoolP("quiet", "q", false, "no progress lines")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("bootpath: unexpected argument %q", fs.Arg(0))
	}
	if o.Board == "" {
		return usagef("bootpath: --board is required (one of %s)", strings.Join(boards.Names(), ", "))
	}
	if !*quiet {
		o.Log = os.Stderr
	}
	res, err := builder.BootPath(context.Background(), o, *src)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		printBootPath(os.Stdout, res)
	}
	if err := res.Closure.Err(); err != nil {
		return fmt.Errorf("board %s with kernel %s: %w", res.Board, res.Kernel, err)
	}
	return nil
}

func printBootPath(out io.Writer, r *builder.BootPathResult) {
	fmt.Fprintf(out, "board %s, kernel %s, device tree %s", r.Board, r.Kernel, r.DTB)
	if n := len(r.Fixups); n > 0 {
		fmt.Fprintf(out, " (%d fix-up(s) applied)", n)
	}
	fmt.Fprintln(out)
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NODE\tCOMPATIBLE\tDRIVER\tKIND\tREACHED AS")
	for _, row := range r.Closure.Rows {
		compat := "-"
		if len(row.Compatible) > 0 {
			compat = row.Compatible[0]
			if row.Matched != "" && row.Kind != "framework" {
				compat = row.Matched
			}
		}
		driver := "-"
		switch {
		case len(row.Modules) > 0:
			driver = strings.Join(row.Modules, ",")
		case row.Kind == "built-in":
			driver = "(in Image)"
		case row.Kind == "framework":
			driver = "(" + row.Matched + ")"
		}
		if row.Kconfig != "" {
			driver = "CONFIG_" + row.Kconfig + "?"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", row.Path, compat, driver, row.Kind, row.Via)
	}
	w.Flush()
	fmt.Fprintf(out, "%d devices; modules for the initramfs: %s\n", len(r.Closure.Rows), strings.Join(r.Modules, " "))
	for _, row := range r.Watchdog {
		fmt.Fprintf(out, "watchdog: %s drives %s (%s), carried for coldplug\n", strings.Join(row.Modules, ","), row.Path, row.Matched)
	}
}
