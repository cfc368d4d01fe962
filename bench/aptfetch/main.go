// Command aptfetch runs one way of fetching the default Debian root's
// packages into an apt cache directory, for bench/aptfetch.sh:
//
//	aptfetch -dir DIR names      # print the resolved set, NAME:arm64=VERSION a line
//	aptfetch -dir DIR mkimage    # fetch them as mkimage build does
//	aptfetch -dir DIR pairs      # one apt-cache show and one apt-get download per package (before)
//
// DIR holds lists/ (copied in by the script) and gets debs/. The fetching
// modes print the seconds the fetch took, resolving the set left out.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/mkimage/mkimage/builder"
	"github.com/mkimage/mkimage/internal/build/apt"
)

func main() {
	dir := flag.String("dir", "", "apt cache directory")
	suite := flag.String("suite", builder.DefaultSuite, "Debian suite")
	flag.Parse()
	if *dir == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: aptfetch -dir DIR names|mkimage|pairs")
		os.Exit(2)
	}
	if err := run(*dir, *suite, flag.Arg(0)); err != nil {
		fmt.Fprintln(os.Stderr, "aptfetch:", err)
		os.Exit(1)
	}
}

func run(dir, suite, mode string) error {
	ctx := context.Background()
	c := &apt.Cache{Dir: dir, Arch: "arm64", Log: os.Stderr}
	pkgs, err := builder.DebianPackages(ctx, c, suite, nil)
	if err != nil {
		return err
	}
	start := time.Now()
	switch mode {
	case "names":
		for _, p := range pkgs {
			fmt.Printf("%s:arm64=%s\n", p.Name, p.Version)
		}
	case "mkimage":
		_, err = builder.FetchDebs(ctx, c, pkgs)
	case "pairs":
		c.Log = nil // one line per package is the old way's noise, not its cost
		for _, p := range pkgs {
			if _, err = c.Fetch(ctx, p.Name+"="+p.Version); err != nil {
				break
			}
		}
	default:
		return fmt.Errorf("unknown mode %q (names, mkimage or pairs)", mode)
	}
	if err == nil && mode != "names" {
		fmt.Printf("%.1f\n", time.Since(start).Seconds())
	}
	return err
}
