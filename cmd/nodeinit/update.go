package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/mkimage/mkimage/internal/node/apply"
	"github.com/mkimage/mkimage/internal/node/updater"
)

const commandUsage = `nodeinit is the PID 1 of a node's initramfs. Run from a booted
versioned root (an image built with mkimage build --update-key), it is
the node's update command:

  nodeinit update apply [--older] [--retry] [--reboot] [URL]
      fetch the signed bundle at URL (default: the URL in /etc/mkimage/update-url),
      check it, install it as the version the next boot tries. URL is a
      bundle directory (http:// or https://) or a bundle in an OCI registry,
      oci://HOST[:PORT]/REPO:TAG or oci://HOST[:PORT]/REPO@sha256:DIGEST
      (mkimage update push; HTTPS, plain HTTP only on loopback or with
      oci+http://; the login in /etc/mkimage/registry-auth, user:secret,
      or anonymous)
  nodeinit update apply --channel URL [--reboot] [--lease-wait D]
      fetch the signed channel document at URL (http(s)://..., or
      oci://HOST/REPO:TAG from a registry; default, when no bundle URL
      is given: the URL in /etc/mkimage/channel-url), check its signature and
      sequence, and install the channel's version if this node's wave is open
      (mkimage fleet rollout opens them). --reboot, when the node reports to
      a build host (/etc/mkimage/status-url), first waits for a reboot lease
      so no more than K nodes reboot at once
  nodeinit update check [--no-reboot] [--keep N] [--hook-timeout D] [--fallback-wait D]
      at every boot: run the health checks of a version being tried and
      commit it, or reboot when one fails (after a reboot lease, when the
      build host can be reached and grants one within --fallback-wait;
      without one otherwise); record a version that used up its tries
      as bad
  nodeinit update status [--json]
      the versions on this card: good, trying, bad and why
  nodeinit update report [URL]
      send the status, signed with this node's key, to the build host at
      URL (default: the URL in /etc/mkimage/status-url; mkimage serve
      --status-dir). check and apply report by themselves when that file
      exists; their report failing fails neither
  nodeinit update commit
      make the running version good without running the checks
  nodeinit update prune [--keep N]
      delete old versions (never good, tried or running)

With a backup target in the cluster config ([backup.target]), it is the
node's backup command too:

  nodeinit backup export
      send every snapshot the target lacks, incrementally, and prune the
      target (the snapshot timer runs it after each snapshot)
  nodeinit backup list [--from NODE]
      the complete snapshots the target holds
  nodeinit backup restore [--from NODE] [--into DIR] SNAPSHOT
      bring SNAPSHOT back from the target as a read-only subvolume
      DIR/SNAPSHOT (default DIR: the snapshot directory's restored/)
  nodeinit backup restore-container [--from NODE] NAME [SNAPSHOT]
      put container NAME back as SNAPSHOT (of /var/lib/lxc; default: the
      newest the target holds) had it: copied beside it while it runs,
      then stopped, swapped in in one rename and restarted if it ran
  --from NODE reads another node's backups (its directory beside this
  node's on the target): a new card taking over a dead node's containers.
  nodeinit backup rollback SNAPSHOT
      at the next boot, make the root what SNAPSHOT (under /.snapshots, a
      snapshot of this version's root, or one restored there) holds; the
      root it replaces is kept beside it (an updatable image's root only)

Moving a container to another node (mkimage container move runs these
over SSH on both nodes and the gateways, piping one node's stream into
the other's):

  nodeinit container send --pass 1|2 [--live] NAME
      write a pass of NAME's move to stdout: 1, a copy while it runs;
      2, after stopping it and setting it aside, only what changed
      (--live: checkpointed with CRIU instead of stopped, where CRIU can)
  nodeinit container receive --pass 1|2 NAME
      read a pass from stdin; after pass 2, put NAME in place and start it
      if it ran (restored from the checkpoint a live move sent, where CRIU can)
  nodeinit container abort NAME
      on the node NAME was leaving: put it back, start it if it ran
  nodeinit container finish NAME
      on the node NAME left: delete the move's snapshots
  nodeinit container place NAME NODE
      record that NAME runs on NODE (/var/lib/mkimage/placement) and
      apply it now: routes, the container's pinning, its antispoof rules

Examples:
  nodeinit update apply --reboot http://build-host:8080/bundles/v2/
  nodeinit update apply --reboot --channel http://build-host:8080/channel.json
  nodeinit update apply oci://registry.example.com/fleet/odroid-c2:v2
  nodeinit update status
  nodeinit update report http://build-host:8080
  nodeinit backup restore root-20261203-033000
  nodeinit backup restore-container --from node07 web
`

// newFlags is the flag set of `nodeinit NAME` (NAME: "backup
// restore"): a bad flag or -h prints commandUsage on stderr.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("nodeinit "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, commandUsage) }
	return fs
}

// progress writes "nodeinit: ..." lines to w: the backup and container
// commands' progress on stderr, their answer alone on stdout.
func progress(w io.Writer) func(string, ...any) {
	return func(format string, a ...any) { fmt.Fprintf(w, "nodeinit: "+format+"\n", a...) }
}

// failed says `nodeinit NAME: ERR` on w and returns the exit status 1.
func failed(w io.Writer, name string, err error) int {
	fmt.Fprintf(w, "nodeinit %s: %v\n", name, err)
	return 1
}

// command runs nodeinit as a command (not PID 1) and returns its exit
// status.
func command(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "backup" {
		return backupCommand(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "container" {
		return containerCommand(args[1:], os.Stdin, stdout, stderr)
	}
	if len(args) == 0 || args[0] != "update" {
		fmt.Fprint(stderr, commandUsage)
		return 2
	}
	if len(args) < 2 {
		fmt.Fprint(stderr, commandUsage)
		return 2
	}
	sub, rest := args[1], args[2:]
	fs := newFlags("update "+sub, stderr)
	older := fs.Bool("older", false, "apply: accept a version created before the running one")
	retry := fs.Bool("retry", false, "apply: accept a version recorded as bad")
	reboot := fs.Bool("reboot", false, "apply: reboot into the new version once it is installed")
	channel := fs.String("channel", "", "apply: follow the signed channel document at this URL")
	leaseWait := fs.Duration("lease-wait", 30*time.Minute, "apply --reboot: the longest wait for a reboot lease before giving up the reboot")
	noReboot := fs.Bool("no-reboot", false, "check: do not reboot when a check fails")
	fallbackWait := fs.Duration("fallback-wait", 10*time.Minute, "check: the longest wait for a reboot lease before falling back anyway")
	keep := fs.Int("keep", 1, "check, prune: old versions to keep besides good, tried and running")
	hookTimeout := fs.Duration("hook-timeout", 10*time.Minute, "check: time each health check may take")
	asJSON := fs.Bool("json", false, "status: print JSON")
	if err := fs.Parse(rest); err != nil {
		return 2
	}
	logf := func(format string, a ...any) { fmt.Fprintf(stdout, "nodeinit: update: "+format+"\n", a...) }
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	card, err := updater.Open("/", logf)
	if err != nil {
		fmt.Fprintf(stderr, "nodeinit update %s: %v\n", sub, err)
		return 1
	}
	defer card.Close()
	switch sub {
	case "apply":
		var res apply.Result
		if chURL := channelArg(fs, *channel, card.ChannelURL()); chURL != "" {
			if *channel != "" && fs.NArg() > 0 {
				fmt.Fprintf(stderr, "%s: give a bundle URL or --channel, not both\n", fs.Name())
				return 2
			}
			cr, cerr := card.ApplyChannel(ctx, chURL, nil)
			if cerr != nil {
				err = fmt.Errorf("apply --channel %s: %w", chURL, cerr)
				break
			}
			if !cr.Decision.Take {
				return 0 // ApplyChannel logged why
			}
			res = cr.Applied
		} else {
			url, ok := urlArg(fs, card.DefaultURL(), "one bundle URL", updater.URLFile, stderr)
			if !ok {
				return 2
			}
			res, err = card.Apply(ctx, url, *older, *retry)
			if errors.Is(err, apply.ErrRunning) {
				// What a timer finds most of the time: nothing new.
				logf("%s: the version offered is the one running", url)
				return 0
			}
			if err != nil {
				err = fmt.Errorf("apply %s: %w", url, err)
				break
			}
		}
		logf("version %s installed (%d bytes downloaded); the next boot tries it", res.ID, res.Bytes)
		if *reboot {
			// No more than K nodes reboot at once where a build host
			// hands out leases; without one, reboot as before.
			if su := card.StatusURL(); su != "" {
				if err = card.Lease(ctx, su, *leaseWait, 0); err != nil {
					break
				}
			}
			card.Close()
			err = rebootNode(logf)
		}
	case "check":
		_, err = card.Check(ctx, updater.CheckOptions{HookTimeout: *hookTimeout, Keep: *keep})
		if errors.Is(err, updater.ErrCheckFailed) && !*noReboot {
			logf("%v; rebooting", err)
			// A bad wave fails on many nodes at once: they fall back a
			// few at a time where a build host hands out leases, but
			// never wait on one that cannot be reached.
			if su := card.StatusURL(); su != "" {
				if lerr := card.FallbackLease(ctx, su, *fallbackWait, 0); lerr != nil {
					logf("%v; rebooting without a lease", lerr)
				}
			}
			card.Close()
			if rerr := rebootNode(logf); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
	case "status":
		var s updater.Status
		if s, err = card.Status(); err != nil {
			break
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			err = enc.Encode(s)
		} else {
			err = s.Print(stdout)
		}
	case "report":
		url, ok := urlArg(fs, card.StatusURL(), "the build host's URL", updater.StatusURLFile, stderr)
		if !ok {
			return 2
		}
		err = card.Report(ctx, url)
	case "commit":
		err = card.Commit()
	case "prune":
		err = card.Prune(*keep)
	default:
		fmt.Fprint(stderr, commandUsage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "nodeinit update %s: %v\n", sub, err)
		return 1
	}
	return 0
}

// urlArg is the command's one URL argument, or else fromRoot, the one
// the root names in file.
func urlArg(fs *flag.FlagSet, fromRoot, what, file string, stderr io.Writer) (string, bool) {
	url := fs.Arg(0)
	if url == "" {
		url = fromRoot
	}
	if url == "" || fs.NArg() > 1 {
		fmt.Fprintf(stderr, "%s: give %s (or put it in /%s)\n", fs.Name(), what, file)
		return "", false
	}
	return url, true
}

// channelArg is the channel to follow: --channel, or else, when no
// bundle URL is given, the one the root names.
func channelArg(fs *flag.FlagSet, flagURL, fromRoot string) string {
	if flagURL != "" || fs.NArg() > 0 {
		return flagURL
	}
	return fromRoot
}

// rebootNode asks the root's init to reboot (systemd's or busybox's
// reboot command), so services stop cleanly.
func rebootNode(logf func(string, ...any)) error {
	logf("rebooting")
	out, err := exec.Command("reboot").CombinedOutput()
	if err != nil {
		return fmt.Errorf("reboot: %w: %s", err, out)
	}
	return nil
}
