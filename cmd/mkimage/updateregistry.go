package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/mkimage/mkimage/internal/build/bundle"
	"github.com/mkimage/mkimage/internal/build/registryauth"
	"github.com/mkimage/mkimage/internal/node/netfetch"
	"github.com/mkimage/mkimage/internal/update"
	"github.com/mkimage/mkimage/internal/update/registry"
)

// registryFlags are push's and pull's: how to reach the registry and
// which keys a bundle must be signed by.
type registryFlags struct {
	plainHTTP    *bool
	dockerConfig *string
	keys         *string
}

// addRegistryFlags defines the flags; keysUse "" leaves out --keys (a
// command that checks no bundle).
func addRegistryFlags(fs *pflag.FlagSet, keysUse string) registryFlags {
	f := registryFlags{
		plainHTTP:    fs.Bool("plain-http", false, "speak HTTP, not HTTPS, to the registry (a registry on loopback always gets HTTP)"),
		dockerConfig: fs.String("docker-config", "", "Docker config whose logins (docker login, credential helpers) to use (default $DOCKER_CONFIG/config.json or ~/.docker/config.json)"),
	}
	if keysUse != "" {
		f.keys = fs.String("keys", "", keysUse)
	}
	return f
}

// client is a registry client with the Docker config's logins.
func (f registryFlags) client() (*registry.Client, error) {
	creds, err := registryauth.Docker(*f.dockerConfig)
	if err != nil {
		return nil, err
	}
	return registry.New(creds, nil, *f.plainHTTP), nil
}

// open returns the reference, the client and the keys.
func (f registryFlags) open(cmd, rawRef string) (registry.Ref, *registry.Client, []update.PublicKey, error) {
	ref, err := registry.ParseRef(rawRef)
	if err != nil {
		return ref, nil, nil, usagef("%s: %v", cmd, err)
	}
	if *f.keys == "" {
		return ref, nil, nil, usagef("%s: --keys FILE is required (the public keys the bundle must be signed by, e.g. fleet.key.pub)", cmd)
	}
	b, err := os.ReadFile(*f.keys)
	if err != nil {
		return ref, nil, nil, fmt.Errorf("--keys: %w", err)
	}
	keys, err := update.ParsePublicKeys(b)
	if err != nil {
		return ref, nil, nil, fmt.Errorf("--keys %s: %w", *f.keys, err)
	}
	c, err := f.client()
	return ref, c, keys, err
}

func runUpdatePush(args []string) error {
	fs := newFlags("update push", "update push BUNDLE_DIR REF --keys FILE [--plain-http] [--docker-config PATH]")
	rf := addRegistryFlags(fs, "public keys the bundle must be signed by: it is checked before anything is pushed")
	quiet := fs.BoolP("quiet", "q", false, "no progress lines")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usagef("update push: want BUNDLE_DIR and REF (host[:port]/repo:tag), got %d arguments", fs.NArg())
	}
	ref, c, keys, err := rf.open("update push", fs.Arg(1))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := os.Stderr
	if *quiet {
		log = nil
	}
	digest, pushed, err := bundle.Push(ctx, c, fs.Arg(0), ref, keys, log)
	for _, p := range pushed {
		what := "already there"
		if p.New {
			what = "pushed"
		}
		fmt.Printf("  %-20s %12d  %s  %s\n", p.Name, p.Size, p.Digest, what)
	}
	if err != nil {
		return err
	}
	fmt.Printf("pushed %s to %s (%s@%s)\n", fs.Arg(0), ref, ref.Host+"/"+ref.Repo, digest)
	return nil
}

func runUpdatePull(args []string) error {
	fs := newFlags("update pull", "update pull REF DIR --keys FILE [--plain-http] [--docker-config PATH]")
	rf := addRegistryFlags(fs, "public keys the bundle must be signed by: checked before any payload is fetched")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usagef("update pull: want REF (host[:port]/repo:tag or @sha256:...) and DIR, got %d arguments", fs.NArg())
	}
	ref, c, keys, err := rf.open("update pull", fs.Arg(0))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m, err := bundle.Pull(ctx, c, ref, fs.Arg(1), keys, &netfetch.Fetcher{Log: func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "mkimage: "+format+"\n", a...)
	}})
	if err != nil {
		return err
	}
	fmt.Printf("pulled %s into %s: version %s of %s\n", ref, fs.Arg(1), m.ID, m.Board)
	return nil
}
