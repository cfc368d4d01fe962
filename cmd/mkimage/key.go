package main

import (
	"crypto/rand"
	"fmt"

	"github.com/mkimage/mkimage/internal/update"
)

func init() {
	register(&command{name: "key", summary: "make the ed25519 key that signs update bundles (key generate)", run: runKey})
}

func runKey(args []string) error {
	if len(args) == 0 || args[0] != "generate" {
		fs := newFlags("key", "key generate -o PATH [--comment TEXT]")
		if err := parse(fs, args); err != nil {
			return err
		}
		return usagef("key: want a subcommand: mkimage key generate -o PATH")
	}
	fs := newFlags("key generate", "key generate -o PATH [--comment TEXT]")
	out := fs.StringP("output", "o", "", "private key file to write (mode 0600); the public key goes to PATH.pub, which nodes are given to trust. Neither may exist")
	comment := fs.String("comment", "", "text kept with the key, e.g. who holds it (one line)")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usagef("key generate: unexpected argument %q", fs.Arg(0))
	case *out == "":
		return usagef("key generate: -o PATH is required")
	}
	if err := update.CheckComment(*comment); err != nil {
		return usagef("--comment: %v", err)
	}
	k, err := update.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	k.Comment = *comment
	if err := update.WriteKeyPair(*out, k); err != nil {
		return err
	}
	fmt.Printf("wrote %s (private, keep it safe) and %s.pub:\n%s\n", *out, *out, k.Public())
	return nil
}
