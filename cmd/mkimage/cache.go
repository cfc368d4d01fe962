package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mkimage/mkimage/internal/bytesize"
	"github.com/mkimage/mkimage/internal/cachedir"
)

func init() {
	register(&command{name: "cache", summary: "what the caches hold; prune what no build used lately", run: runCache})
}

func runCache(args []string) error {
	if len(args) > 0 && args[0] == "prune" {
		return runCachePrune(args[1:])
	}
	fs := newFlags("cache", "cache [--cache-dir DIR] [--json]\n       mkimage cache prune [--older-than AGE] [--dry-run] [--cache-dir DIR]")
	dir := fs.String("cache-dir", cachedir.Root(), "the cache to look at")
	asJSON := fs.Bool("json", false, "print every entry with its size and last use as JSON instead of a table")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("cache: unexpected argument %q (did you mean \"mkimage cache prune\"?)", fs.Arg(0))
	}
	u, err := cachedir.List(*dir)
	if err != nil {
		return fmt.Errorf("--cache-dir: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(u)
	}
	return printCache(os.Stdout, u, time.Now())
}

func printCache(out io.Writer, u *cachedir.Usage, now time.Time) error {
	fmt.Fprintf(out, "cache %s\n", u.Root)
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "KIND\tENTRIES\tSIZE\tOLDEST USE\tNEWEST USE\tHOLDS")
	for _, k := range u.Kinds {
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", k.Name, len(k.Entries), bytesize.Format(k.Size), ago(now, k.Oldest), ago(now, k.Newest), k.Holds)
	}
	fmt.Fprintf(w, "total\t%d\t%s\n", u.Entries, bytesize.Format(u.Size))
	if err := w.Flush(); err != nil {
		return err
	}
	if len(u.Unknown) > 0 {
		fmt.Fprintf(out, "not mkimage's, left alone: %s\n", strings.Join(u.Unknown, ", "))
	}
	return nil
}

func runCachePrune(args []string) error {
	fs := newFlags("cache prune", "cache prune [--older-than AGE] [--dry-run] [--cache-dir DIR]")
	dir := fs.String("cache-dir", cachedir.Root(), "the cache to prune")
	olderThan := fs.String("older-than", "30d", "remove entries last used longer ago than this: days (30d) or Go's units (36h, 1d12h); at least "+age(cachedir.MinAge))
	dryRun := fs.Bool("dry-run", false, "print what would be removed and remove nothing")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("cache prune: unexpected argument %q", fs.Arg(0))
	}
	d, err := cachedir.ParseAge(*olderThan)
	if err != nil {
		return usagef("--older-than: %w", err)
	}
	res, err := cachedir.Prune(*dir, d, *dryRun)
	if errors.Is(err, cachedir.ErrTooRecent) {
		return usagef("--older-than: %w", err)
	}
	if res != nil {
		printPrune(os.Stdout, res, *olderThan, time.Now())
	}
	return err
}

func printPrune(out io.Writer, res *cachedir.PruneResult, olderThan string, now time.Time) {
	verb, freed := "removed", "freed"
	if res.DryRun {
		verb, freed = "would remove", "would free"
	}
	for _, p := range res.Removed {
		fmt.Fprintf(out, "%s %s (%s, last used %s)\n", verb, p.Path, bytesize.Format(p.Size), ago(now, p.LastUse))
	}
	for _, p := range res.InUse {
		fmt.Fprintf(out, "kept %s: a running build holds its lock\n", p)
	}
	fmt.Fprintf(out, "%s %s in %s of %s; kept %s used in the last %s\n", freed, bytesize.Format(res.Freed), entries(len(res.Removed)), res.Root, entries(res.Kept), olderThan)
}

func entries(n int) string {
	if n == 1 {
		return "1 entry"
	}
	return fmt.Sprintf("%d entries", n)
}

// ago says how long before now t was, in the coarsest unit that still
// tells entries apart: "45d ago", "3h ago", "12m ago", "-" for none.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return age(now.Sub(t)) + " ago"
}

func age(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d >= time.Hour:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d >= time.Minute:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%ds", max(d/time.Second, 0))
}
