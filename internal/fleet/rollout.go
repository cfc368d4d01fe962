package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/atomicfile"
	"github.com/mkimage/mkimage/internal/cluster"
	"github.com/mkimage/mkimage/internal/server/netserve"
	"github.com/mkimage/mkimage/internal/update"
	"github.com/mkimage/mkimage/internal/update/registry"
)

// Publisher is where a channel file goes for the nodes to fetch: a file
// mkimage serve serves (FilePublisher) or a registry's tag
// (RegistryPublisher).
type Publisher interface {
	// Current returns the channel file published now; nil if none.
	Current(ctx context.Context) ([]byte, error)
	// Publish replaces it, whole or not at all.
	Publish(ctx context.Context, file []byte) error
	String() string
}

// FilePublisher publishes to a file, e.g. under the directory mkimage
// serve serves, so the nodes fetch it over HTTP.
type FilePublisher struct{ Path string }

func (p FilePublisher) Current(context.Context) ([]byte, error) {
	b, err := os.ReadFile(p.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// Publish renames the whole file in place: a node fetching meanwhile
// gets the old document or the new one.
func (p FilePublisher) Publish(_ context.Context, file []byte) error {
	return atomicfile.WriteFile(p.Path, file, 0o644)
}

func (p FilePublisher) String() string { return p.Path }

// RegistryPublisher publishes to a tag in an OCI registry, so the nodes
// follow oci://REF (registry.PushChannel's artifact). The tag moves to
// the new channel in one manifest write: a node reading meanwhile gets
// the old one or the new one.
type RegistryPublisher struct {
	Client *registry.Client
	Ref    registry.Ref
}

func (p RegistryPublisher) Current(ctx context.Context) ([]byte, error) {
	b, err := p.Client.GetChannel(ctx, p.Ref)
	if errors.Is(err, registry.ErrNotFound) {
		return nil, nil
	}
	return b, err
}

func (p RegistryPublisher) Publish(ctx context.Context, file []byte) error {
	return p.Client.PushChannel(ctx, p.Ref, file)
}

func (p RegistryPublisher) String() string { return registry.Scheme + p.Ref.String() }

// Options is what Rollout rolls out, where and how.
type Options struct {
	Config    *cluster.Config // the inventory and its [rollout]
	Server    string          // the status server (mkimage serve --status-dir)
	Key       update.PrivateKey
	Publisher Publisher
	// Channel names a new channel (default: the cluster's name); a
	// published channel keeps its name.
	Channel         string
	Version, Source string
	Poll            time.Duration // how often the status server is asked; default 15 s
	Out             io.Writer     // progress lines
}

// ErrHalted is what Rollout's error wraps when the rollout stopped
// because too many nodes of a wave failed, now or in an earlier run.
var ErrHalted = errors.New("rollout halted")

// Rollout moves the channel to o.Version: it publishes the channel with
// every wave closed, then opens the waves one by one, each once every
// node of the one before (within its fraction) has committed the version
// and min_soak has passed since its first commit. When more than a
// wave's max_failures nodes record the version bad, it publishes the
// channel halted and returns an error naming them. A published channel
// of the same version is resumed from where it stands.
func Rollout(ctx context.Context, o Options) error {
	if o.Poll <= 0 {
		o.Poll = 15 * time.Second
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if err := update.CheckID(o.Version); err != nil {
		return fmt.Errorf("--version: %w", err)
	}
	r := &rollout{Options: o}
	cur, err := o.Publisher.Current(ctx)
	if err != nil {
		return err
	}
	if cur != nil {
		if r.ch, err = update.VerifyChannel(cur, []update.PublicKey{o.Key.Public()}); err != nil {
			return fmt.Errorf("%s: %w (was it signed with another key? remove it to start the channel anew; nodes then need its sequence to grow past the one they accepted)", o.Publisher, err)
		}
	}
	if cur != nil && r.ch.Version == o.Version && (o.Source == "" || o.Source == r.ch.Source) {
		if r.ch.Halted {
			return fmt.Errorf("%w: channel %s, version %s: %s (roll out a fixed version)", ErrHalted, r.ch.Name, r.ch.Version, r.ch.HaltReason)
		}
		fmt.Fprintf(o.Out, "resuming the rollout of %s on channel %s (sequence %d)\n", o.Version, r.ch.Name, r.ch.Sequence)
	} else if err := r.start(ctx); err != nil {
		return err
	}
	for i := range r.ch.Waves {
		if err := r.wave(ctx, i); err != nil {
			return err
		}
	}
	fmt.Fprintf(o.Out, "rollout of %s on channel %s complete\n", o.Version, r.ch.Name)
	return nil
}

type rollout struct {
	Options
	ch update.Channel
}

// start publishes a new channel document of the version, every wave
// closed, its sequence past the published one's.
func (r *rollout) start(ctx context.Context) error {
	if r.Source == "" {
		return errors.New("--source is required for a new rollout (where the nodes get the version, e.g. the bundle's URL)")
	}
	name := r.ch.Name
	if name == "" {
		name = r.Channel
	}
	if name == "" {
		name = string(r.Config.Cluster.Name)
	}
	waves, k := r.Config.RolloutWaves()
	r.ch = update.Channel{Format: update.ChannelFormat, Name: name, Sequence: r.ch.Sequence, Version: r.Version, Source: r.Source, MaxRebooting: k}
	for _, w := range waves {
		r.ch.Waves = append(r.ch.Waves, update.Wave{Name: w.Name, Roles: w.Roles, Fraction: w.Fraction, MaxFailures: w.MaxFailures, MinSoak: int64(w.MinSoak / time.Second)})
	}
	fmt.Fprintf(r.Out, "channel %s: rolling out %s from %s in %d waves, at most %d nodes rebooting at once\n", name, r.Version, r.Source, len(waves), k)
	return r.publish(ctx)
}

// publish signs the channel with the next sequence and publishes it.
func (r *rollout) publish(ctx context.Context) error {
	r.ch.Sequence++
	file, err := update.SignChannel(r.ch, r.Key)
	if err != nil {
		return err
	}
	if err := r.Publisher.Publish(ctx, file); err != nil {
		return fmt.Errorf("publishing channel %s: %w", r.ch.Name, err)
	}
	return nil
}

// progress is where a wave stands.
type progress struct {
	nodes, committed []string
	failed           []string // "node: why"
	waiting          []string // "node (what it does)"
}

func (p progress) String() string {
	s := fmt.Sprintf("%d of %d committed, %d failed", len(p.committed), len(p.nodes), len(p.failed))
	if len(p.waiting) > 0 {
		more := ""
		w := p.waiting
		if len(w) > 5 {
			w, more = w[:5], fmt.Sprintf(" and %d more", len(p.waiting)-5)
		}
		s += "; waiting for " + strings.Join(w, ", ") + more
	}
	return s
}

// measure finds the wave's nodes and where each stands.
func (r *rollout) measure(w update.Wave, reps []update.Received) progress {
	var p progress
	byNode := map[string]update.Received{}
	for _, rep := range reps {
		byNode[rep.Node] = rep
	}
	for _, n := range r.Config.Nodes {
		name := string(n.Name)
		if !r.ch.InWave(w, name, string(n.Role)) {
			continue
		}
		p.nodes = append(p.nodes, name)
		rep, ok := byNode[name]
		bad := slices.IndexFunc(rep.Status.Bad(), func(v update.Version) bool { return v.ID == r.Version })
		switch {
		case !ok:
			p.waiting = append(p.waiting, name+" (never reported)")
		case rep.Status.Good == r.Version:
			p.committed = append(p.committed, name)
		case bad >= 0:
			p.failed = append(p.failed, name+": "+rep.Status.Bad()[bad].Why)
		case rep.Status.Trying == r.Version:
			p.waiting = append(p.waiting, name+" (trying it)")
		default:
			p.waiting = append(p.waiting, name+" (running "+rep.Status.Running+")")
		}
	}
	return p
}

// wave opens wave i and waits until it is done: every node committed
// and the soak passed (the last wave needs no soak), or halts.
func (r *rollout) wave(ctx context.Context, i int) error {
	w := &r.ch.Waves[i]
	if !w.Open {
		w.Open = true
		if err := r.publish(ctx); err != nil {
			return err
		}
		fmt.Fprintf(r.Out, "wave %s (%d of %d) open: roles %s, fraction %g\n", w.Name, i+1, len(r.ch.Waves), strings.Join(w.Roles, ", "), w.Fraction)
	}
	last, soaking := "", false
	for {
		reps, err := netserve.FetchStatus(ctx, r.Server)
		if err != nil {
			// The server being down a moment is no reason to give up.
			fmt.Fprintf(r.Out, "wave %s: status: %v (asking again)\n", w.Name, err)
		} else {
			p := r.measure(*w, reps)
			if line := p.String(); line != last {
				fmt.Fprintf(r.Out, "wave %s: %s\n", w.Name, line)
				last = line
			}
			if len(p.failed) > w.MaxFailures {
				return r.halt(ctx, w, p)
			}
			if len(p.committed) > 0 && w.FirstCommit == 0 {
				// Recorded in the channel, so a resumed rollout soaks
				// from the same time.
				w.FirstCommit = time.Now().Unix()
				if err := r.publish(ctx); err != nil {
					return err
				}
			}
			if len(p.committed) == len(p.nodes) {
				soakEnd := time.Unix(w.FirstCommit, 0).Add(time.Duration(w.MinSoak) * time.Second)
				if len(p.nodes) == 0 || i == len(r.ch.Waves)-1 || !time.Now().Before(soakEnd) {
					fmt.Fprintf(r.Out, "wave %s done: %d nodes run %s\n", w.Name, len(p.nodes), r.Version)
					return nil
				}
				if !soaking {
					fmt.Fprintf(r.Out, "wave %s: soaking until %s\n", w.Name, soakEnd.Format(time.TimeOnly))
					soaking = true
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("rollout of %s stopped in wave %s: %w (run it again to resume)", r.Version, w.Name, ctx.Err())
		case <-time.After(r.Poll):
		}
	}
}

// halt publishes the channel halted and says why.
func (r *rollout) halt(ctx context.Context, w *update.Wave, p progress) error {
	why := fmt.Sprintf("wave %s: %d of %d nodes recorded %s bad (max_failures %d): %s", w.Name, len(p.failed), len(p.nodes), r.Version, w.MaxFailures, strings.Join(p.failed, "; "))
	if len(why) > 4000 {
		why = why[:4000] + "..."
	}
	r.ch.Halted, r.ch.HaltReason = true, strings.Map(func(c rune) rune {
		if c < 0x20 || c >= 0x7f && c < 0xa0 {
			return ' '
		}
		return c
	}, why)
	if err := r.publish(ctx); err != nil {
		return fmt.Errorf("%w: %s; publishing the halt failed too: %w", ErrHalted, why, err)
	}
	fmt.Fprintf(r.Out, "channel %s halted (sequence %d): no node takes %s any more\n", r.ch.Name, r.ch.Sequence, r.Version)
	return fmt.Errorf("%w: %s", ErrHalted, why)
}
