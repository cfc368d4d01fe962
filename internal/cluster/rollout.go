package cluster

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Rollout is the [rollout] table: how mkimage fleet rollout moves a new
// version through the fleet. Unset values take the defaults below; no
// [[rollout.wave]] means one wave per role, workers first, then
// gateways, then routers (the nodes the others reach the world by go
// last).
type Rollout struct {
	// MaxRebooting (K) is how many nodes may reboot at once: the seed's
	// 46 boards share one power supply.
	MaxRebooting int `toml:"max_rebooting"`
	// MaxFailures and MinSoak are the defaults of the waves.
	MaxFailures *int          `toml:"max_failures"`
	MinSoak     *Duration     `toml:"min_soak"`
	Waves       []RolloutWave `toml:"wave"`
}

// RolloutWave is a [[rollout.wave]] entry.
type RolloutWave struct {
	Name     Hostname `toml:"name"`
	Roles    []Role   `toml:"roles"`
	Fraction *float64 `toml:"fraction"` // of the roles' nodes, by a hash of the node's name; default 1
	// MaxFailures is how many of the wave's nodes may record the
	// version bad before the rollout halts.
	MaxFailures *int `toml:"max_failures"`
	// MinSoak is the least time from the wave's first commit to the
	// next wave.
	MinSoak *Duration `toml:"min_soak"`
}

// Rollout defaults.
const (
	DefaultMaxRebooting = 4
	DefaultMaxFailures  = 0
	DefaultMinSoak      = 10 * time.Minute
)

// Duration is a Go duration ("30m", "1h30m").
type Duration struct{ time.Duration }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil || v < 0 {
		return fmt.Errorf("bad duration %q (expected like \"30m\" or \"1h30m\")", b)
	}
	d.Duration = v
	return nil
}

// Wave is a rollout wave with the defaults filled in.
type Wave struct {
	Name        string
	Roles       []string
	Fraction    float64
	MaxFailures int
	MinSoak     time.Duration
}

// RolloutWaves returns the waves with the defaults filled in, and K.
func (c *Config) RolloutWaves() (waves []Wave, maxRebooting int) {
	r := c.Rollout
	if r == nil {
		r = &Rollout{}
	}
	maxRebooting = r.MaxRebooting
	if maxRebooting == 0 {
		maxRebooting = DefaultMaxRebooting
	}
	failures, soak := DefaultMaxFailures, DefaultMinSoak
	if r.MaxFailures != nil {
		failures = *r.MaxFailures
	}
	if r.MinSoak != nil {
		soak = r.MinSoak.Duration
	}
	if len(r.Waves) == 0 {
		for _, role := range Roles {
			waves = append(waves, Wave{Name: role + "s", Roles: []string{role}, Fraction: 1, MaxFailures: failures, MinSoak: soak})
		}
		return waves, maxRebooting
	}
	for _, w := range r.Waves {
		x := Wave{Name: string(w.Name), Fraction: 1, MaxFailures: failures, MinSoak: soak}
		for _, role := range w.Roles {
			x.Roles = append(x.Roles, string(role))
		}
		if w.Fraction != nil {
			x.Fraction = *w.Fraction
		}
		if w.MaxFailures != nil {
			x.MaxFailures = *w.MaxFailures
		}
		if w.MinSoak != nil {
			x.MinSoak = w.MinSoak.Duration
		}
		waves = append(waves, x)
	}
	return waves, maxRebooting
}

// validateRollout checks the [rollout] table: counts in range, waves
// named once, and every role of the inventory in some wave (a node of a
// role no wave holds would never be updated).
func (c *Config) validateRollout(bad func(line int, format string, a ...any)) {
	r := c.Rollout
	if r == nil {
		return
	}
	l := c.loc
	if r.MaxRebooting < 0 || r.MaxRebooting > 10000 {
		bad(l.first("rollout.max_rebooting"), "[rollout] max_rebooting = %d (expected how many nodes may reboot at once, 1 to 10000)", r.MaxRebooting)
	}
	if r.MaxFailures != nil && (*r.MaxFailures < 0 || *r.MaxFailures > 10000) {
		bad(l.first("rollout.max_failures"), "[rollout] max_failures = %d (expected 0 to 10000)", *r.MaxFailures)
	}
	names := map[Hostname]int{}
	covered := map[Role]bool{}
	for i, w := range r.Waves {
		at := func(f string) int { return l.at("rollout.wave", i, f) }
		uniqueName(bad, l, names, "rollout.wave", "rollout wave", i, w.Name)
		if len(w.Roles) == 0 {
			bad(at(""), "rollout wave %q has no roles (expected like roles = [\"worker\"])", w.Name)
		}
		for _, role := range w.Roles {
			covered[role] = true
		}
		if f := w.Fraction; f != nil && !(*f > 0 && *f <= 1) {
			bad(at("fraction"), "rollout wave %q: fraction = %v (expected more than 0, at most 1: the share of the roles' nodes in the wave)", w.Name, *f)
		}
		if m := w.MaxFailures; m != nil && (*m < 0 || *m > 10000) {
			bad(at("max_failures"), "rollout wave %q: max_failures = %d (expected 0 to 10000)", w.Name, *m)
		}
	}
	if len(r.Waves) == 0 {
		return
	}
	missing := map[Role][]string{}
	for _, n := range c.Nodes {
		if n.Role != "" && !covered[n.Role] {
			missing[n.Role] = append(missing[n.Role], string(n.Name))
		}
	}
	for _, role := range Roles {
		if nodes := missing[Role(role)]; len(nodes) > 0 {
			slices.Sort(nodes)
			bad(l.first("rollout"), "no rollout wave holds role %s, so nodes %s would never be updated (expected it in some wave's roles)", role, strings.Join(nodes, ", "))
		}
	}
}
