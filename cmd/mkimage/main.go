// Command mkimage builds bootable btrfs-rooted SD card and netboot images
// for small ARM boards. This file only dispatches to subcommands; each
// subcommand lives in its own file, parses its flags and calls packages.
package main

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"
)

// command is one subcommand. run gets the arguments after the subcommand
// name.
type command struct {
	name    string
	summary string
	run     func(args []string) error
}

var commands = map[string]*command{}

// register adds a subcommand; called from init functions of the files
// beside this one.
func register(c *command) { commands[c.name] = c }

// usageError marks errors caused by bad command-line use (exit status 2).
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	name := "build"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	} else if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
		usage()
		return 0
	} else if len(args) == 0 {
		usage()
		return 2
	}
	if name == "help" {
		if len(args) > 0 {
			if c, ok := commands[args[0]]; ok {
				return exit(c.run([]string{"--help"}))
			}
		}
		usage()
		return 0
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "mkimage: unknown command %q (known: %s); see mkimage --help\n", name, strings.Join(commandNames(), ", "))
		return 2
	}
	return exit(c.run(args))
}

func exit(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, pflag.ErrHelp):
		return 0
	}
	fmt.Fprintf(os.Stderr, "mkimage: error: %v\n", err)
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

func commandNames() []string {
	var names []string
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func usage() {
	fmt.Fprintf(os.Stderr, `mkimage builds bootable btrfs-rooted SD card and netboot images for ARM boards.

Usage:
  mkimage --board BOARD -o node.img [flags]   build an image (same as "mkimage build")
  mkimage COMMAND [flags]

Commands:
`)
	for _, n := range commandNames() {
		fmt.Fprintf(os.Stderr, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(os.Stderr, "\nRun \"mkimage COMMAND --help\" for a command's flags.\n")
}

// newFlags returns a flag set for a subcommand with a usage text that
// names the command.
func newFlags(name, synopsis string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: mkimage %s\n\nFlags:\n%s", synopsis, fs.FlagUsages())
		if ex := examples[name]; ex != "" {
			fmt.Fprintf(os.Stderr, "\nExamples:\n%s\n", ex)
		}
	}
	return fs
}

// subFlags returns a set to define one group of a command's flags in.
func subFlags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("", pflag.ContinueOnError)
	fs.SortFlags = false
	return fs
}

// flagGroup is a titled part of a command's flags.
type flagGroup struct {
	title string
	flags *pflag.FlagSet
}

// groupFlags adds the groups' flags to fs and makes its usage text list
// them group by group, then the command's examples.
func groupFlags(fs *pflag.FlagSet, synopsis string, groups []flagGroup) {
	for _, g := range groups {
		fs.AddFlagSet(g.flags)
	}
	name := fs.Name()
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: mkimage %s\n", synopsis)
		for _, g := range groups {
			fmt.Fprintf(os.Stderr, "\n%s:\n%s", g.title, g.flags.FlagUsages())
		}
		if ex := examples[name]; ex != "" {
			fmt.Fprintf(os.Stderr, "\nExamples:\n%s\n", ex)
		}
	}
}

// parse parses args and turns flag errors into usage errors.
func parse(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	return nil
}
