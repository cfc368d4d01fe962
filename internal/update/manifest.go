// Package update holds what the build host and a node share about update
// bundles: the manifest and its checks, version ids and the root
// subvolume identity derived from them, ed25519 keys, signing and
// verifying, a reader that checks a payload while it streams, and a
// node's signed status report (Report) with the Status it carries.
//
// A bundle is a directory (or the same files over HTTP):
//
//	manifest.json   the Manifest, as Marshal writes it
//	manifest.sig    base64 of the ed25519 signature of manifest.json's
//	                exact bytes, and a newline
//	root.full       btrfs send stream creating the version's root
//	root.from-ID    btrfs send stream from version ID to this one (optional)
//	Image           kernel
//	initrd.img      initramfs
//	board.dtb       device tree (boards whose firmware has none)
//
// Both root streams make a subvolume named by the version id, with the
// identity RootIdentity gives (so a node receiving into roots/ gets
// roots/<id>). A node checks the signature before it parses anything
// else, and each payload's size and sha256 while it streams
// (NewPayloadReader).
//
// The package uses the standard library only (and internal/atomicfile):
// the node's PID 1 links it.
package update

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/mkimage/mkimage/internal/bootstate"
)

// FormatVersion is the manifest format this package reads and writes.
const FormatVersion = 1

// Bundle file names.
const (
	ManifestFile  = "manifest.json"
	SignatureFile = "manifest.sig"
	RootFull      = "root.full"
	// The boot files have the names they get in the version's directory
	// on the boot partition (package bootstate).
	BootKernel = bootstate.KernelFile
	BootInitrd = bootstate.InitrdFile
	BootDTB    = bootstate.DTBFile
)

// RootFrom is the name of the incremental root stream from version parent.
func RootFrom(parent string) string { return "root.from-" + parent }

// Payload kinds.
const (
	KindRootFull        = "root-full"        // send stream creating the root
	KindRootIncremental = "root-incremental" // send stream from Payload.Parent
	KindBoot            = "boot"             // a file of the version's boot directory
)

// Limits on what a manifest may say: generous for real bundles, small
// enough that hostile input cannot make a node allocate or loop much.
const (
	MaxManifestSize = 1 << 20
	MaxPayloads     = 64
	MaxPayloadSize  = 1 << 40
	// MaxCmdline is arm64's COMMAND_LINE_SIZE, terminating NUL included.
	MaxCmdline = 2048 - 1
)

// ErrInvalid marks every error that says a bundle or channel is wrong
// (bad signature, bad manifest, a payload that does not match it), as
// opposed to one reading it: fetching the same again will not help.
var ErrInvalid = errors.New("invalid signed update data")

// Manifest describes one version and the payloads that make it. Fields
// are marshaled in this order; Marshal's output is the only form Verify
// accepts.
type Manifest struct {
	Format int    `json:"format"` // FormatVersion
	Board  string `json:"board"`
	ID     string `json:"id"` // see CheckID and DeriveID
	// Parent is the version this one was built as an update of ("" for
	// none). Which version each incremental stream applies to is its
	// payload's Parent.
	Parent string `json:"parent"`
	// Created is SOURCE_DATE_EPOCH of the build, in seconds: versions are
	// ordered by it (ids are hashes and have no order).
	Created int64 `json:"created"`
	// Cmdline is the kernel command line the version boots with.
	Cmdline  string    `json:"cmdline"`
	Payloads []Payload `json:"payloads"`
}

// Payload is one file of a bundle.
type Payload struct {
	Name string `json:"name"` // file name in the bundle
	Kind string `json:"kind"` // KindRootFull, KindRootIncremental or KindBoot
	// Parent (KindRootIncremental only) is the version whose root the
	// stream applies to.
	Parent string `json:"parent,omitempty"`
	// BootName (KindBoot only) is the file's name in the version's boot
	// directory.
	BootName string `json:"boot_name,omitempty"`
	SHA256   string `json:"sha256"` // lowercase hex
	Size     int64  `json:"size"`
}

// Marshal returns the manifest's bytes as they are signed: indented JSON,
// fields in declaration order, a final newline. It refuses a manifest
// Validate refuses, so nothing invalid is ever signed.
func (m Manifest) Marshal() ([]byte, error) { return marshalDoc(m) }

// marshalDoc is the form every signed document is signed in: indented
// JSON and a final newline, of a value that passed its Validate.
func marshalDoc(v interface{ Validate() error }) ([]byte, error) {
	if err := v.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// invalid wraps a field check's error as one of document name.
func invalid(name string, err error) error {
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalid, name, err)
	}
	return nil
}

// parseExact decodes a signed document and accepts it only if Marshal
// gives back exactly b. The format is read first, so a newer document
// is named as such (with upgrade, what to do) rather than as one with
// unknown fields. Errors wrap invalid.
func parseExact[T interface{ Marshal() ([]byte, error) }](b []byte, invalid error, name, upgrade string) (T, error) {
	var m T
	var f struct {
		Format int `json:"format"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return m, fmt.Errorf("%w: %s: %w", invalid, name, err)
	}
	if f.Format != FormatVersion {
		return m, fmt.Errorf("%w: %s: format %d; this mkimage reads format %d (%s)", invalid, name, f.Format, FormatVersion, upgrade)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&m); err != nil {
		var zero T
		return zero, fmt.Errorf("%w: %s: %w", invalid, name, err)
	}
	again, err := m.Marshal() // validates
	if err != nil {
		var zero T
		return zero, err
	}
	if !bytes.Equal(again, b) {
		var zero T
		return zero, fmt.Errorf("%w: %s is not in the form mkimage writes (extra data, duplicate fields or other spelling)", invalid, name)
	}
	return m, nil
}

var (
	boardRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)
	shaRE   = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// Validate checks every field; errors name the field and the bad value.
func (m Manifest) Validate() error { return invalid(ManifestFile, m.validate()) }

// checkHead checks the fields every signed document starts with.
func checkHead(format int, board string, created int64) error {
	if format != FormatVersion {
		return fmt.Errorf("format %d, want %d", format, FormatVersion)
	}
	if !boardRE.MatchString(board) {
		return fmt.Errorf("board %q: want 1 to 64 of a-z, 0-9 and -", board)
	}
	if created < 0 {
		return fmt.Errorf("created %d: before 1970", created)
	}
	return nil
}

func (m Manifest) validate() error {
	if err := checkHead(m.Format, m.Board, m.Created); err != nil {
		return err
	}
	if err := CheckID(m.ID); err != nil {
		return fmt.Errorf("id: %w", err)
	}
	if m.Parent != "" {
		if err := CheckID(m.Parent); err != nil {
			return fmt.Errorf("parent: %w", err)
		}
		if m.Parent == m.ID {
			return fmt.Errorf("parent %s is the version itself", m.Parent)
		}
	}
	if err := checkCmdline(m.Cmdline); err != nil {
		return err
	}
	if len(m.Payloads) == 0 || len(m.Payloads) > MaxPayloads {
		return fmt.Errorf("%d payloads, want 1 to %d", len(m.Payloads), MaxPayloads)
	}
	names, bootNames, parents := map[string]bool{}, map[string]bool{}, map[string]bool{}
	full := 0
	for i := range m.Payloads {
		p := &m.Payloads[i]
		if err := p.validate(m.ID); err != nil {
			return fmt.Errorf("payload %d (%q): %w", i, p.Name, err)
		}
		if names[p.Name] {
			return fmt.Errorf("payload %q listed twice", p.Name)
		}
		names[p.Name] = true
		switch p.Kind {
		case KindRootFull:
			full++
		case KindRootIncremental:
			if parents[p.Parent] {
				return fmt.Errorf("two incremental root streams from %s", p.Parent)
			}
			parents[p.Parent] = true
		case KindBoot:
			if bootNames[p.BootName] {
				return fmt.Errorf("boot file %q given twice", p.BootName)
			}
			bootNames[p.BootName] = true
		}
	}
	if full > 1 {
		return fmt.Errorf("%d full root streams, want at most one", full)
	}
	if full == 0 && len(parents) == 0 {
		return errors.New("no root stream")
	}
	if !bootNames[BootKernel] || !bootNames[BootInitrd] {
		return fmt.Errorf("boot files %s and %s are required", BootKernel, BootInitrd)
	}
	return nil
}

func (p *Payload) validate(id string) error {
	if err := checkFileName(p.Name); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	if p.Name == ManifestFile || p.Name == SignatureFile {
		return fmt.Errorf("name %q is the manifest's", p.Name)
	}
	if p.Kind == KindRootIncremental {
		if err := CheckID(p.Parent); err != nil {
			return fmt.Errorf("parent: %w", err)
		}
		if p.Parent == id {
			return fmt.Errorf("parent %s is the version itself", p.Parent)
		}
	} else if p.Parent != "" {
		return fmt.Errorf("parent %q on a %s payload", p.Parent, p.Kind)
	}
	switch p.Kind {
	case KindRootFull, KindRootIncremental:
		if p.BootName != "" {
			return fmt.Errorf("boot_name %q on a %s payload", p.BootName, p.Kind)
		}
	case KindBoot:
		if err := checkFileName(p.BootName); err != nil {
			return fmt.Errorf("boot_name: %w", err)
		}
	default:
		return fmt.Errorf("kind %q: want %s, %s or %s", p.Kind, KindRootFull, KindRootIncremental, KindBoot)
	}
	if !shaRE.MatchString(p.SHA256) {
		return fmt.Errorf("sha256 %q: want 64 lowercase hex digits", p.SHA256)
	}
	if p.Size < 0 || p.Size > MaxPayloadSize {
		return fmt.Errorf("size %d: want 0 to %d", p.Size, int64(MaxPayloadSize))
	}
	return nil
}

// checkFileName accepts a plain file name: one path element that cannot
// climb out of a directory, hide (a leading dot is a temporary file's) or
// carry control characters into logs and scripts.
func checkFileName(name string) error {
	switch {
	case name == "" || len(name) > 255:
		return fmt.Errorf("%q: want 1 to 255 bytes", name)
	case strings.ContainsAny(name, `/\`):
		return fmt.Errorf("%q is a path, want a plain file name", name)
	case strings.HasPrefix(name, "."):
		return fmt.Errorf("%q starts with a dot", name)
	case !printable(name):
		return fmt.Errorf("%q holds control characters or invalid UTF-8", name)
	}
	return nil
}

// checkCmdline accepts a kernel command line that can go into
// extlinux.conf or a U-Boot variable as one line: printable ASCII.
func checkCmdline(s string) error {
	if s == "" || len(s) > MaxCmdline {
		return fmt.Errorf("cmdline: %d bytes, want 1 to %d", len(s), MaxCmdline)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return fmt.Errorf("cmdline: byte %#x at %d: want printable ASCII", s[i], i)
		}
	}
	return nil
}

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}
