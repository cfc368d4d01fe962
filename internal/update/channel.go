package update

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"slices"
)

// A channel is the fleet's signed word on which version its nodes should
// run, where to get it and which nodes may take it now. The build host
// (mkimage fleet rollout) writes it; a node fetches it, checks it with
// the keys it checks bundles with, and decides (Channel.Decide).
//
// Its file is the document as Channel.Marshal writes it (indented JSON
// ending in a newline) followed by one line, the signature Sign makes of
// the document's exact bytes: one file, so a rewrite is one rename and a
// node never sees a document with another's signature.
const (
	ChannelFormat = FormatVersion // parseExact reads one format for every signed document
	// ChannelFile is the name a channel is published under.
	ChannelFile = "channel.json"
	// MaxChannelSize bounds a channel file.
	MaxChannelSize = 64 << 10
	// MaxWaves and MaxWaveRoles bound the waves a channel lists.
	MaxWaves     = 32
	MaxWaveRoles = 8
	// MaxSource bounds the source string.
	MaxSource = 2048
)

// Channel is a channel document. Fields are marshaled in this order;
// Marshal's output is the only form VerifyChannel accepts.
type Channel struct {
	Format int    `json:"format"` // ChannelFormat
	Name   string `json:"channel"`
	// Sequence grows with every document of the channel the build host
	// signs; a node refuses one below the last it accepted, so an old
	// document (a halt lifted, an older version) cannot be replayed.
	Sequence uint64 `json:"sequence"`
	Version  string `json:"version"` // the version id the fleet should run
	// Source is where the node gets the version, passed to apply as it
	// is: a bundle directory URL (http://...) or a registry reference
	// (oci://...).
	Source string `json:"source"`
	// MaxRebooting is how many nodes may reboot at once (K): the reboot
	// leases mkimage serve grants.
	MaxRebooting int    `json:"max_rebooting"`
	Halted       bool   `json:"halted"`
	HaltReason   string `json:"halt_reason,omitempty"`
	Waves        []Wave `json:"waves"`
}

// Wave is one step of a rollout: the nodes of Roles whose bucket
// (Bucket) is below Fraction.
type Wave struct {
	Name     string   `json:"name"`
	Roles    []string `json:"roles"`
	Fraction float64  `json:"fraction"` // 0..1
	// MaxFailures is how many of the wave's nodes may record the version
	// bad before the rollout halts.
	MaxFailures int `json:"max_failures"`
	// MinSoak is the least time, in seconds, from the wave's first
	// commit to opening the next wave.
	MinSoak int64 `json:"min_soak_seconds"`
	Open    bool  `json:"open"`
	// FirstCommit is when the rollout first saw a node of the wave
	// commit the version (Unix seconds; 0: not yet): its soak starts.
	FirstCommit int64 `json:"first_commit,omitempty"`
}

var channelNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// CheckChannelName accepts a channel or wave name: also safe as a file
// name on the node, which records the last sequence per channel.
func CheckChannelName(name string) error {
	if !channelNameRE.MatchString(name) || name != "" && name[len(name)-1] == '.' {
		return fmt.Errorf("name %q: want 1 to 64 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit", name)
	}
	return nil
}

// Marshal returns the document's bytes as they are signed. It refuses a
// channel Validate refuses, so nothing invalid is ever signed.
func (c Channel) Marshal() ([]byte, error) {
	return marshalDoc(c)
}

// Validate checks every field; errors name the field and the bad value
// and wrap ErrInvalid.
func (c Channel) Validate() error { return invalid(ChannelFile, c.validate()) }

func (c Channel) validate() error {
	if c.Format != ChannelFormat {
		return fmt.Errorf("format %d, want %d", c.Format, ChannelFormat)
	}
	if err := CheckChannelName(c.Name); err != nil {
		return fmt.Errorf("channel %w", err)
	}
	if c.Sequence == 0 {
		return errors.New("sequence 0: want 1 or more")
	}
	if err := CheckID(c.Version); err != nil {
		return fmt.Errorf("version: %w", err)
	}
	if c.Source == "" || len(c.Source) > MaxSource || !printable(c.Source) {
		return fmt.Errorf("source %q: want 1 to %d printable characters", c.Source, MaxSource)
	}
	if c.MaxRebooting < 1 || c.MaxRebooting > 100000 {
		return fmt.Errorf("max_rebooting %d: want 1 to 100000", c.MaxRebooting)
	}
	if c.HaltReason != "" && (!c.Halted || len(c.HaltReason) > 4096 || !printable(c.HaltReason)) {
		return fmt.Errorf("halt_reason %q: want up to 4096 printable characters, and only on a halted channel", c.HaltReason)
	}
	if len(c.Waves) == 0 || len(c.Waves) > MaxWaves {
		return fmt.Errorf("%d waves, want 1 to %d", len(c.Waves), MaxWaves)
	}
	names := map[string]bool{}
	for i, w := range c.Waves {
		if err := w.validate(); err != nil {
			return fmt.Errorf("wave %d (%q): %w", i+1, w.Name, err)
		}
		if names[w.Name] {
			return fmt.Errorf("wave %q listed twice", w.Name)
		}
		names[w.Name] = true
	}
	return nil
}

func (w Wave) validate() error {
	if err := CheckChannelName(w.Name); err != nil {
		return err
	}
	if len(w.Roles) == 0 || len(w.Roles) > MaxWaveRoles {
		return fmt.Errorf("%d roles, want 1 to %d", len(w.Roles), MaxWaveRoles)
	}
	for i, r := range w.Roles {
		if err := CheckChannelName(r); err != nil {
			return fmt.Errorf("role %w", err)
		}
		if slices.Contains(w.Roles[:i], r) {
			return fmt.Errorf("role %q listed twice", r)
		}
	}
	// Written so that NaN fails too.
	if !(w.Fraction >= 0 && w.Fraction <= 1) {
		return fmt.Errorf("fraction %v: want 0 to 1", w.Fraction)
	}
	if w.MaxFailures < 0 || w.MaxFailures > 100000 {
		return fmt.Errorf("max_failures %d: want 0 to 100000", w.MaxFailures)
	}
	if w.MinSoak < 0 || w.MinSoak > 365*24*3600 {
		return fmt.Errorf("min_soak_seconds %d: want 0 to a year", w.MinSoak)
	}
	if w.FirstCommit < 0 {
		return fmt.Errorf("first_commit %d: before 1970", w.FirstCommit)
	}
	return nil
}

// SignChannel returns the channel file: the document and its signature.
func SignChannel(c Channel, k PrivateKey) ([]byte, error) {
	doc, err := c.Marshal()
	if err != nil {
		return nil, err
	}
	if len(doc)+100 > MaxChannelSize {
		return nil, fmt.Errorf("channel document of %d bytes, more than %d", len(doc), MaxChannelSize-100)
	}
	return append(doc, Sign(doc, k)...), nil
}

// VerifyChannel checks a channel file's signature by one of keys and only
// then parses the document and checks every field. Any failure wraps
// ErrInvalid.
func VerifyChannel(file []byte, keys []PublicKey) (Channel, error) {
	if len(file) > MaxChannelSize {
		return Channel{}, fmt.Errorf("%w: %s is %d bytes, more than %d", ErrInvalid, ChannelFile, len(file), MaxChannelSize)
	}
	// The signature is the last line; the document is all before it.
	i := bytes.LastIndexByte(bytes.TrimSuffix(file, []byte("\n")), '\n')
	if i < 0 {
		return Channel{}, fmt.Errorf("%w: %s: want the document and a signature line", ErrInvalid, ChannelFile)
	}
	doc, sig := file[:i+1], file[i+1:]
	c, _, err := verifyDoc[Channel](channelDoc, doc, sig, keys)
	return c, err
}

var channelDoc = docKind{ErrInvalid, ChannelFile, ChannelFile + "'s signature line", "the channel", "update the node first", MaxChannelSize}

// Bucket places a node in [0, 1) for the channel's version: stable for
// one (channel, version, node), different for the next version, so the
// nodes that go first change from version to version.
func (c Channel) Bucket(node string) float64 {
	h := sha256.New()
	for _, s := range []string{c.Name, c.Version, node} {
		binary.Write(h, binary.BigEndian, uint64(len(s)))
		h.Write([]byte(s))
	}
	x := binary.BigEndian.Uint64(h.Sum(nil))
	return float64(x>>11) / (1 << 53)
}

// InWave reports whether a node of role belongs to wave w.
func (c Channel) InWave(w Wave, node, role string) bool {
	return slices.Contains(w.Roles, role) && c.Bucket(node) < w.Fraction
}

// NodeVersions is what Decide needs to know of a node.
type NodeVersions struct {
	Name, Role    string
	Running, Good string
	Bad           []string // versions the node recorded bad
}

// Decision is Decide's answer: whether the node takes the channel's
// version now, and why (or why not), for its log.
type Decision struct {
	Take bool
	Wave string // the open wave that lets it, or the first one it is in
	Why  string
}

// Decide says whether node n should take the channel's version now: not
// if the channel is halted, n runs it or has it as good, or recorded it
// bad; otherwise if an open wave holds n's role and n's bucket is below
// its fraction.
func (c Channel) Decide(n NodeVersions) Decision {
	v := c.Version
	switch {
	case c.Halted && c.HaltReason == "":
		return Decision{Why: fmt.Sprintf("channel %s is halted", c.Name)}
	case c.Halted:
		return Decision{Why: fmt.Sprintf("channel %s is halted (%s)", c.Name, c.HaltReason)}
	case n.Running == v:
		return Decision{Why: "version " + v + " is running"}
	case n.Good == v:
		return Decision{Why: "version " + v + " is good already (it boots once no other is tried)"}
	case slices.Contains(n.Bad, v):
		return Decision{Why: "version " + v + " is recorded bad on this node"}
	}
	first, hasRole := "", false
	for _, w := range c.Waves {
		if !slices.Contains(w.Roles, n.Role) {
			continue
		}
		hasRole = true
		if c.Bucket(n.Name) >= w.Fraction {
			continue
		}
		if w.Open {
			return Decision{Take: true, Wave: w.Name, Why: fmt.Sprintf("wave %s is open", w.Name)}
		}
		if first == "" {
			first = w.Name
		}
	}
	switch {
	case first != "":
		return Decision{Wave: first, Why: fmt.Sprintf("wave %s is not open yet", first)}
	case hasRole:
		return Decision{Why: fmt.Sprintf("node %s is outside the fraction of every wave of role %s", n.Name, n.Role)}
	}
	return Decision{Why: fmt.Sprintf("no wave of channel %s takes role %q", c.Name, n.Role)}
}
