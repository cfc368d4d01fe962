// Package bundle writes and checks update bundles on the build host: a
// version's boot files and its root as btrfs send streams written from
// the in-memory tree (no root, no mount), listed in a manifest signed
// with ed25519. The format, and what a node checks, is internal/update's.
// The same version, parents and key give the same bytes.
package bundle

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/mkimage/mkimage/internal/atomicfile"
	"github.com/mkimage/mkimage/internal/build/sendstream"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/update"
)

// Version is what a node boots, as a bundle ships it.
type Version struct {
	Board   string
	Cmdline string    // kernel command line
	Created time.Time // the build's SOURCE_DATE_EPOCH: orders versions
	Kernel  []byte    // arm64 Image
	Initrd  []byte    // initramfs
	DTB     []byte    // the board's device tree; nil where firmware has one
	Root    *fstree.Tree
}

// boot returns the version's boot files by their bundle names, in
// manifest order.
func (v *Version) boot() []file {
	fs := []file{{update.BootKernel, v.Kernel}, {update.BootInitrd, v.Initrd}}
	if v.DTB != nil {
		fs = append(fs, file{update.BootDTB, v.DTB})
	}
	return fs
}

type file struct {
	name string
	data []byte
}

// ID returns the version's id: update.DeriveID over the board, command
// line, root tree and boot files. It reads every file of the root.
func (v *Version) ID() (string, error) {
	if v.Root == nil {
		return "", errors.New("version has no root tree")
	}
	root, err := v.Root.Hash()
	if err != nil {
		return "", fmt.Errorf("hashing the root: %w", err)
	}
	sums := map[string]string{}
	for _, f := range v.boot() {
		sums[f.name] = sha256hex(f.data)
	}
	return update.DeriveID(v.Board, v.Cmdline, root, sums), nil
}

// Parent is an earlier version an incremental root stream starts from: a
// node holding Root as version ID receives the stream instead of the full
// one.
type Parent struct {
	ID   string
	Root *fstree.Tree
}

// Write writes v's bundle to dir, signed with key: manifest.json,
// manifest.sig, root.full, root.from-ID for each of parents, and the
// boot files. dir appears complete or not at all (it is written beside
// it and renamed), and replaces an earlier bundle there; any other
// existing dir is refused.
func Write(dir string, v *Version, key update.PrivateKey, parents ...Parent) (update.Manifest, error) {
	if len(v.Kernel) == 0 || len(v.Initrd) == 0 {
		return update.Manifest{}, errors.New("bundle: the version has no kernel or no initramfs")
	}
	id, err := v.ID()
	if err != nil {
		return update.Manifest{}, fmt.Errorf("bundle: %w", err)
	}
	identity, err := streamOptions(id)
	if err != nil {
		return update.Manifest{}, fmt.Errorf("bundle: %w", err)
	}
	seen := map[string]bool{}
	for _, p := range parents {
		if err := update.CheckID(p.ID); err != nil {
			return update.Manifest{}, fmt.Errorf("bundle: parent: %w", err)
		}
		if p.ID == id {
			return update.Manifest{}, fmt.Errorf("bundle: parent %s is this same version (nothing changed)", p.ID)
		}
		if seen[p.ID] || p.Root == nil {
			return update.Manifest{}, fmt.Errorf("bundle: parent %s given twice or without a root", p.ID)
		}
		seen[p.ID] = true
	}
	m := update.Manifest{
		Format: update.FormatVersion, Board: v.Board, ID: id,
		Created: v.Created.Unix(), Cmdline: v.Cmdline,
	}
	if len(parents) > 0 {
		m.Parent = parents[0].ID
	}
	err = atomicfile.ReplaceDir(dir, "an update bundle", update.ManifestFile, func(tmp string) error {
		p, err := writeStream(tmp, update.RootFull, func(w io.Writer) error {
			return sendstream.WriteFull(w, v.Root, identity)
		})
		if err != nil {
			return err
		}
		p.Kind = update.KindRootFull
		m.Payloads = append(m.Payloads, p)
		for _, parent := range parents {
			p, err := writeIncremental(tmp, parent, v.Root, identity)
			if err != nil {
				return err
			}
			m.Payloads = append(m.Payloads, p)
		}
		for _, f := range v.boot() {
			if err := atomicfile.WriteFile(filepath.Join(tmp, f.name), f.data, 0o644); err != nil {
				return err
			}
			m.Payloads = append(m.Payloads, update.Payload{
				Name: f.name, Kind: update.KindBoot, BootName: f.name, SHA256: sha256hex(f.data), Size: int64(len(f.data)),
			})
		}
		mb, err := m.Marshal()
		if err != nil {
			return err
		}
		if err := atomicfile.WriteFile(filepath.Join(tmp, update.SignatureFile), update.Sign(mb, key), 0o644); err != nil {
			return err
		}
		return atomicfile.WriteFile(filepath.Join(tmp, update.ManifestFile), mb, 0o644)
	})
	if err != nil {
		return update.Manifest{}, fmt.Errorf("bundle %s: %w", dir, err)
	}
	return m, nil
}

// writeIncremental writes root.from-<parent.ID>: the stream that turns a
// received copy of the parent's root into root.
func writeIncremental(dir string, parent Parent, root *fstree.Tree, identity sendstream.Options) (update.Payload, error) {
	from, err := streamOptions(parent.ID)
	if err != nil {
		return update.Payload{}, err
	}
	o := identity
	o.ParentUUID, o.ParentCTransid = from.UUID, from.CTransid
	p, err := writeStream(dir, update.RootFrom(parent.ID), func(w io.Writer) error {
		return sendstream.WriteIncremental(w, parent.Root, root, o)
	})
	p.Kind, p.Parent = update.KindRootIncremental, parent.ID
	return p, err
}

// streamOptions names version id's root in its streams: the subvolume
// receive creates is called by the id (a node keeps roots/<id>), with the
// identity update.RootIdentity derives from it.
func streamOptions(id string) (sendstream.Options, error) {
	uuid, ctransid, err := update.RootIdentity(id)
	return sendstream.Options{Name: id, UUID: uuid, CTransid: ctransid}, err
}

// writeStream writes what send writes to dir/name, and returns the
// payload's name, size and sha256.
func writeStream(dir, name string, send func(io.Writer) error) (update.Payload, error) {
	f, err := atomicfile.Create(filepath.Join(dir, name), 0o644)
	if err != nil {
		return update.Payload{}, err
	}
	defer f.Abort()
	h := &counter{Hash: sha256.New()}
	bw := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	if err := send(bw); err != nil {
		return update.Payload{}, err
	}
	if err := bw.Flush(); err != nil {
		return update.Payload{}, fmt.Errorf("%s: %w", name, err)
	}
	if err := f.Commit(); err != nil {
		return update.Payload{}, err
	}
	return update.Payload{Name: name, SHA256: hex.EncodeToString(h.Sum(nil)), Size: h.n}, nil
}

// counter is a hash that counts what it was given.
type counter struct {
	hash.Hash
	n int64
}

func (c *counter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.Hash.Write(p)
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Verify checks the bundle in dir as a node would: the manifest's
// signature by one of keys, every field, and each payload's size and
// sha256. Errors name the file and what is wrong with it (and wrap
// update.ErrInvalid when the bundle, not the reading, is at fault).
func Verify(dir string, keys []update.PublicKey) (update.Manifest, error) {
	mb, err := readSmall(filepath.Join(dir, update.ManifestFile), update.MaxManifestSize)
	if err != nil {
		return update.Manifest{}, err
	}
	sig, err := readSmall(filepath.Join(dir, update.SignatureFile), 1024)
	if err != nil {
		return update.Manifest{}, err
	}
	m, err := update.Verify(mb, sig, keys)
	if err != nil {
		return update.Manifest{}, fmt.Errorf("bundle %s: %w", dir, err)
	}
	for _, p := range m.Payloads {
		if err := verifyPayload(filepath.Join(dir, p.Name), p); err != nil {
			return update.Manifest{}, fmt.Errorf("bundle %s: %w", dir, err)
		}
	}
	return m, nil
}

func verifyPayload(path string, p update.Payload) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, update.NewPayloadReader(f, p))
	return err
}

// readSmall reads a file that must not exceed max bytes.
func readSmall(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: %s: more than %d bytes", update.ErrInvalid, path, max)
	}
	return b, nil
}

// ReadParent reads the earlier bundle in dir back as a Parent for an
// incremental stream: checked as Verify does (signed by one of keys), for
// board, then its full root stream read back into a tree.
func ReadParent(dir, board string, keys []update.PublicKey) (Parent, error) {
	m, err := Verify(dir, keys)
	if err != nil {
		return Parent{}, fmt.Errorf("parent: %w", err)
	}
	if m.Board != board {
		return Parent{}, fmt.Errorf("parent bundle %s is for board %s, not %s", dir, m.Board, board)
	}
	f, err := os.Open(filepath.Join(dir, update.RootFull))
	if err != nil {
		return Parent{}, fmt.Errorf("parent: %w", err)
	}
	defer f.Close()
	root, opts, err := sendstream.ReadFull(bufio.NewReaderSize(f, 1<<20), sendstream.DefaultLimits)
	if err != nil {
		return Parent{}, fmt.Errorf("parent bundle %s: %s: %w", dir, update.RootFull, err)
	}
	if want, err := streamOptions(m.ID); err != nil || opts.UUID != want.UUID || opts.Name != want.Name {
		return Parent{}, fmt.Errorf("parent bundle %s: %s is not the root of version %s", dir, update.RootFull, m.ID)
	}
	return Parent{ID: m.ID, Root: root}, nil
}
