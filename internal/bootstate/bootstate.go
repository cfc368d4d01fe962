// Package bootstate is the boot state both U-Boot and the node read and
// write on the FAT partition: which version is good, which one is being
// tried and how many boots it has left. U-Boot's counting boot.scr
// (internal/build/uboot) steps the counter down with `env export -t` and
// `fatwrite`; the node marks a version to try, commits it after its
// checks, and learns that a try failed.
//
// The file is text, "key=value" lines in the byte order U-Boot's `env
// export -t ADDR good try tries` writes them (keys sorted, each line ended
// by a newline, then one NUL, the NUL counted in ${filesize}): with a
// 16-character id and a one-digit counter every state has the same size,
// so U-Boot's rewrite never changes the file's size, and neither side
// needs a filler variable.
//
// The partition holds state.env and its copy state.bak at its root and
// each version's boot files under v/<id>/. Standard library only: the
// node's PID 1 links it.
package bootstate

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/mkimage/mkimage/internal/atomicfile"
)

// Files on the FAT partition, relative to its root.
const (
	// EnvFile is the state U-Boot reads first and the only one it writes.
	EnvFile = "state.env"
	// BakFile is the copy U-Boot reads when EnvFile does not hold a
	// usable state; the node writes it before EnvFile.
	BakFile = "state.bak"
	// VersionsDir holds one directory per version id.
	VersionsDir = "v"
)

// Files in a version's directory (VersionDir).
const (
	KernelFile  = "Image"
	InitrdFile  = "initrd.img"
	DTBFile     = "board.dtb" // absent where firmware passes its own tree (QEMU virt)
	BootEnvFile = "boot.env"
)

// MaxTries is the counter a new version starts with: U-Boot boots it this
// many times before it boots good again.
const MaxTries = 3

// IDLen is the length of a version id: lowercase hex digits.
const IDLen = 16

// Size is the length of every encoded state, the trailing NUL included.
const Size = len("good=\ntries=0\ntry=\n\x00") + 2*IDLen

// CmdlineKey is the kernel command line parameter that names the version
// U-Boot booted; the counting boot script appends it to boot.env's
// bootargs.
const CmdlineKey = "mkimage.version"

// State is the content of the state file. When nothing is being tried,
// Try equals Good and Tries is 0.
type State struct {
	Good  string
	Try   string
	Tries int
}

// ValidID reports whether id is a version id: IDLen lowercase hex digits.
func ValidID(id string) error {
	if len(id) != IDLen {
		return fmt.Errorf("version id %q is %d characters, want %d", id, len(id), IDLen)
	}
	for _, c := range []byte(id) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return fmt.Errorf("version id %q: want lowercase hex digits only", id)
		}
	}
	if strings.Count(id, "0") == IDLen {
		// The id is also its root's send transid (package update), and
		// btrfs reads a zero stransid as "never received".
		return fmt.Errorf("version id %q: all zeros", id)
	}
	return nil
}

// VersionDir returns the directory of version id's boot files on the FAT
// partition ("v/<id>").
func VersionDir(id string) string { return path.Join(VersionsDir, id) }

// New returns the state of a card whose only version is good.
func New(good string) (State, error) {
	s := State{Good: good, Try: good}
	return s, s.Validate()
}

// Validate checks both ids, the counter's range, and that a state with
// nothing to try has no tries left.
func (s State) Validate() error {
	if err := ValidID(s.Good); err != nil {
		return fmt.Errorf("good: %w", err)
	}
	if err := ValidID(s.Try); err != nil {
		return fmt.Errorf("try: %w", err)
	}
	if s.Tries < 0 || s.Tries > MaxTries {
		return fmt.Errorf("tries %d: want 0 to %d", s.Tries, MaxTries)
	}
	if s.Try == s.Good && s.Tries != 0 {
		return fmt.Errorf("try %s is the good version but has %d tries: want 0", s.Try, s.Tries)
	}
	return nil
}

// Encode returns the file's bytes, Size long, exactly as U-Boot's `env
// export -t ADDR good try tries` writes them.
func (s State) Encode() ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return fmt.Appendf(nil, "good=%s\ntries=%d\ntry=%s\n\x00", s.Good, s.Tries, s.Try), nil
}

// Parse reads a state file. It accepts only the exact bytes Encode (and
// U-Boot) write, so a torn or damaged file is an error and the reader
// turns to the other copy rather than acting on half a state.
func Parse(b []byte) (State, error) {
	var s State
	if len(b) != Size {
		return s, fmt.Errorf("boot state %q is %d bytes, want %d", clip(b), len(b), Size)
	}
	if b[len(b)-1] != 0 {
		return s, fmt.Errorf("boot state %q does not end in a NUL", clip(b))
	}
	lines := strings.Split(string(b[:len(b)-1]), "\n")
	if len(lines) != 4 || lines[3] != "" {
		return s, fmt.Errorf("boot state %q: want 3 lines, each ended by a newline", clip(b))
	}
	seen := map[string]bool{}
	for _, l := range lines[:3] {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return s, fmt.Errorf("boot state line %q has no '='", l)
		}
		if seen[k] {
			return s, fmt.Errorf("boot state names %q twice", k)
		}
		seen[k] = true
		switch k {
		case "good":
			s.Good = v
		case "try":
			s.Try = v
		case "tries":
			if len(v) != 1 || v[0] < '0' || v[0] > '9' {
				return s, fmt.Errorf("boot state tries %q: want one digit", v)
			}
			s.Tries = int(v[0] - '0')
		default:
			return s, fmt.Errorf("boot state has unknown key %q", k)
		}
	}
	if err := s.Validate(); err != nil {
		return State{}, fmt.Errorf("boot state %q: %w", clip(b), err)
	}
	// Same size, valid values, but another key order: not what either
	// writer produces.
	if want, _ := s.Encode(); !bytes.Equal(b, want) {
		return State{}, fmt.Errorf("boot state %q is not in canonical form %q", clip(b), want)
	}
	return s, nil
}

// clip keeps error messages short whatever the input's size.
func clip(b []byte) []byte {
	if len(b) > 2*Size {
		return b[:2*Size]
	}
	return b
}

// TryVersion returns the state that boots id next, for MaxTries boots
// until it is committed. It replaces any version being tried. (The field
// Try holds the name Try.)
func (s State) TryVersion(id string) (State, error) {
	if err := ValidID(id); err != nil {
		return s, err
	}
	if id == s.Good {
		return s, fmt.Errorf("version %s is already the good one", id)
	}
	return State{Good: s.Good, Try: id, Tries: MaxTries}, nil
}

// Commit makes the version being tried the good one. Call it only from a
// boot where Booted(...).Trying() holds and the version passed its checks.
func (s State) Commit() State { return State{Good: s.Try, Try: s.Try} }

// ClearFailed drops the version being tried, once the node has recorded it
// as bad: U-Boot then boots good without counting.
func (s State) ClearFailed() State { return State{Good: s.Good, Try: s.Good} }

// Boot is the state as found at boot together with the version the node
// runs (CmdlineVersion).
//
// Running good while a try has tries left means U-Boot could not boot the
// try this time (its files did not load, or booti returned) and fell back
// in the same boot; it tries again on the next boot.
type Boot struct {
	State   State
	Version string
}

// Booted pairs the state read at boot with the running version.
func (s State) Booted(version string) Boot { return Boot{State: s, Version: version} }

// Trying reports whether the node runs the version being tried, not yet
// committed: run the checks, then Commit. On its last try Tries is
// already 0.
func (b Boot) Trying() bool {
	return b.State.Try != b.State.Good && b.Version == b.State.Try
}

// Failed returns the version that used all its tries without being
// committed, when the node is back on good: record it as bad, then
// ClearFailed.
func (b Boot) Failed() (id string, ok bool) {
	s := b.State
	if s.Try != s.Good && s.Tries == 0 && b.Version == s.Good {
		return s.Try, true
	}
	return "", false
}

// CmdlineVersion returns the version named by the last mkimage.version=
// on a kernel command line (/proc/cmdline).
func CmdlineVersion(cmdline string) (string, bool) {
	id, ok := "", false
	for _, f := range strings.Fields(cmdline) {
		if v, found := strings.CutPrefix(f, CmdlineKey+"="); found {
			id, ok = v, true
		}
	}
	if !ok || ValidID(id) != nil {
		return "", false
	}
	return id, true
}

// BootEnv returns a version's boot.env: the kernel command line as U-Boot's
// `env import -t` reads it.
func BootEnv(bootargs string) ([]byte, error) {
	// A newline would start another variable, a backslash is import's
	// escape character, a NUL ends the text.
	if strings.ContainsAny(bootargs, "\n\r\\\x00") {
		return nil, fmt.Errorf("bootargs %q contains a line break, backslash or NUL", bootargs)
	}
	return []byte("bootargs=" + bootargs + "\n"), nil
}

// Read returns the state in dir (the mounted FAT partition): EnvFile, or
// BakFile when EnvFile is missing or damaged, as U-Boot does.
func Read(dir string) (State, error) {
	var errs []error
	for _, name := range []string{EnvFile, BakFile} {
		p := filepath.Join(dir, name)
		b, err := readSmall(p)
		if err == nil {
			var s State
			if s, err = Parse(b); err == nil {
				return s, nil
			}
		}
		errs = append(errs, fmt.Errorf("%s: %w", p, err))
	}
	return State{}, errors.Join(errs...)
}

// readSmall reads at most a little more than Size bytes, whatever sits
// at p.
func readSmall(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, Size+1)
	n, err := f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b[:n], nil
}

// Write stores s in dir: BakFile first, then EnvFile, so a power cut
// between the two leaves EnvFile whole (old) and U-Boot reading it. Each
// file of the right size is rewritten in place and synced: on FAT that is
// its one data sector, the one U-Boot rewrites, plus the entry's mtime;
// no cluster is freed or allocated. A missing file or one of another size
// is replaced through atomicfile.
func Write(dir string, s State) error {
	b, err := s.Encode()
	if err != nil {
		return err
	}
	for _, name := range []string{BakFile, EnvFile} {
		if err := writeInPlace(filepath.Join(dir, name), b); err != nil {
			return err
		}
	}
	return nil
}

func writeInPlace(p string, b []byte) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return atomicfile.WriteFile(p, b, 0o644)
	}
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil || st.Size() != int64(len(b)) || !st.Mode().IsRegular() {
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		return atomicfile.WriteFile(p, b, 0o644)
	}
	_, err = f.WriteAt(b, 0)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}
