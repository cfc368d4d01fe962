package updater

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/atomicfile"
	"github.com/mkimage/mkimage/internal/cluster/plan"
	"github.com/mkimage/mkimage/internal/node/apply"
	"github.com/mkimage/mkimage/internal/node/netfetch"
	"github.com/mkimage/mkimage/internal/update"
	"github.com/mkimage/mkimage/internal/update/registry"
)

// ChannelURLFile, if present (mkimage build --channel-url, or an
// overlay), names the signed channel document `nodeinit update apply`
// follows when given no URL; it wins over URLFile.
const ChannelURLFile = "etc/mkimage/channel-url"

// ChannelStateDir holds, relative to Card.Top, the last sequence number
// the node accepted of each channel (<name>.seq): in the state
// subvolume, so a version the node goes back to cannot be fed an older
// channel document either.
const ChannelStateDir = "state/node/channels"

// ErrReplayed marks a channel document older than one the node accepted.
var ErrReplayed = errors.New("channel document older than one this node accepted")

// ChannelURL is the channel the root names in ChannelURLFile, "" if none.
func (c *Card) ChannelURL() string {
	return lastLine(filepath.Join(c.Root, ChannelURLFile))
}

// ChannelResult is what ApplyChannel did.
type ChannelResult struct {
	Channel  update.Channel
	Decision update.Decision
	Applied  apply.Result // set when Decision.Take
}

// ApplyChannel fetches the signed channel document at url, checks it
// with the node's update keys and its sequence against the last one the
// node accepted, and, if the channel says this node takes its version
// now (update.Channel.Decide, with the node's name and role), installs
// that version from the channel's source through install (nil: as
// `apply URL` does, taking only the channel's version, older or not: the
// channel is the fleet's signed word, and its sequence stops replays).
func (c *Card) ApplyChannel(ctx context.Context, url string, install func(ctx context.Context, source, version string) (apply.Result, error)) (ChannelResult, error) {
	var res ChannelResult
	file, err := c.getChannel(ctx, url)
	if err != nil {
		return res, err
	}
	ch, err := update.VerifyChannel(file, c.Keys)
	if err != nil {
		return res, fmt.Errorf("%s: %w", url, err)
	}
	if err := c.acceptSequence(ch); err != nil {
		return res, fmt.Errorf("%s: %w", url, err)
	}
	res.Channel = ch
	node, err := c.nodeName()
	if err != nil {
		return res, err
	}
	role := lastLine(filepath.Join(c.Root, plan.RoleFile))
	if role == "" {
		return res, fmt.Errorf("the root does not name this node's role in /%s (nodeinit's policy writes it at boot from the cluster config; reboot, or write it by hand)", plan.RoleFile)
	}
	s, err := c.Status()
	if err != nil {
		return res, err
	}
	nv := update.NodeVersions{Name: node, Role: role, Running: s.Running, Good: s.Good}
	for _, v := range s.Bad() {
		nv.Bad = append(nv.Bad, v.ID)
	}
	res.Decision = ch.Decide(nv)
	c.Log("channel %s #%d: version %s for %s (%s): %s", ch.Name, ch.Sequence, ch.Version, node, role, res.Decision.Why)
	if !res.Decision.Take {
		return res, nil
	}
	if install == nil {
		install = func(ctx context.Context, source, version string) (apply.Result, error) {
			return c.apply(ctx, source, version, true, false)
		}
	}
	res.Applied, err = install(ctx, ch.Source, ch.Version)
	if err != nil {
		return res, fmt.Errorf("version %s from %s: %w", ch.Version, ch.Source, err)
	}
	return res, nil
}

// acceptSequence refuses a channel document whose sequence is below the
// last the node accepted of that channel, and records this one's.
func (c *Card) acceptSequence(ch update.Channel) error {
	p := filepath.Join(c.Top, ChannelStateDir, ch.Name+".seq")
	if last := lastLine(p); last != "" {
		n, err := strconv.ParseUint(last, 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %q is not a sequence number (remove the file to accept the channel's next document)", p, last)
		}
		if ch.Sequence < n {
			return fmt.Errorf("%w: channel %s sequence %d, this node accepted %d (an old document replayed, or the build host's channel file went back; the rollout writes a higher sequence)", ErrReplayed, ch.Name, ch.Sequence, n)
		}
		if ch.Sequence == n {
			return nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	return atomicfile.WriteFile(p, []byte(strconv.FormatUint(ch.Sequence, 10)+"\n"), 0o644)
}

// getChannel fetches a channel file, bounded in size and time: over
// HTTP from mkimage serve's directory, or from a registry (oci://REF,
// with the login RegistryAuthFile holds, as for updates).
func (c *Card) getChannel(ctx context.Context, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	ref, plain, isOCI, err := registry.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("channel URL %q: %w", url, err)
	}
	if isOCI {
		b, err := registry.New(c.registryLogin, nil, plain).GetChannel(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("channel: %w (has mkimage fleet rollout published the channel there?)", err)
		}
		return b, nil
	}
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		return nil, fmt.Errorf("channel URL %q (from --channel or /%s): want http(s)://HOST[:PORT]/PATH of the channel file mkimage fleet rollout writes, or %sHOST/REPO:TAG of the channel it publishes to a registry", url, ChannelURLFile, registry.Scheme)
	}
	b, err := (&netfetch.Fetcher{Log: c.Log}).Small(ctx, url, update.MaxChannelSize)
	if err != nil {
		return nil, fmt.Errorf("channel: %w (is the build host's server up, and has mkimage fleet rollout written the channel there?)", err)
	}
	return b, nil
}
