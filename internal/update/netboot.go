package update

import (
	"errors"
	"fmt"
)

// A netboot tree (mkimage netboot --update-key) carries the sizes and
// sha256 of the images a node fetches over HTTP (root.img, node.img and
// their block maps) in NetbootFile, signed like a bundle's manifest:
//
//	images.json   the NetbootManifest, as its Marshal writes it
//	images.sig    base64 of the ed25519 signature of images.json's exact
//	              bytes, and a newline
//
// A node whose initramfs holds netboot keys checks the signature before
// it reads anything else of the tree, and every file against it before
// it writes or mounts.
const (
	NetbootFile      = "images.json"
	NetbootSignature = "images.sig"
	// MaxNetbootFiles bounds the files a netboot manifest lists.
	MaxNetbootFiles = 16
)

// ErrInvalidNetboot marks every error that says a netboot tree is wrong
// (bad signature, bad manifest, a file that does not match it).
var ErrInvalidNetboot = errors.New("invalid netboot tree")

// NetbootManifest lists the files of a netboot tree a node fetches.
type NetbootManifest struct {
	Format int    `json:"format"` // FormatVersion
	Board  string `json:"board"`
	// Created is SOURCE_DATE_EPOCH of the build, in seconds.
	Created int64         `json:"created"`
	Files   []NetbootItem `json:"files"`
}

// NetbootItem is one file of the tree, by its name in the tree's top
// directory.
type NetbootItem struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // lowercase hex
}

// File returns the entry for name, or an error that says the tree does
// not list it.
func (m NetbootManifest) File(name string) (NetbootItem, error) {
	for _, f := range m.Files {
		if f.Name == name {
			return f, nil
		}
	}
	return NetbootItem{}, fmt.Errorf("%w: %s does not list %s (serve the tree mkimage netboot wrote, whole)", ErrInvalidNetboot, NetbootFile, name)
}

// Marshal returns the manifest's bytes as they are signed (indented
// JSON, a final newline); it refuses what Validate refuses.
func (m NetbootManifest) Marshal() ([]byte, error) { return marshalDoc(m) }

// Validate checks every field; errors name the field and the bad value.
func (m NetbootManifest) Validate() error {
	if err := m.validate(); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalidNetboot, NetbootFile, err)
	}
	return nil
}

func (m NetbootManifest) validate() error {
	if err := checkHead(m.Format, m.Board, m.Created); err != nil {
		return err
	}
	if len(m.Files) == 0 || len(m.Files) > MaxNetbootFiles {
		return fmt.Errorf("%d files, want 1 to %d", len(m.Files), MaxNetbootFiles)
	}
	seen := map[string]bool{}
	for i, f := range m.Files {
		if err := checkFileName(f.Name); err != nil {
			return fmt.Errorf("file %d: name: %w", i, err)
		}
		if f.Name == NetbootFile || f.Name == NetbootSignature {
			return fmt.Errorf("file %d: %q is the manifest's", i, f.Name)
		}
		if seen[f.Name] {
			return fmt.Errorf("file %q listed twice", f.Name)
		}
		seen[f.Name] = true
		if !shaRE.MatchString(f.SHA256) {
			return fmt.Errorf("file %q: sha256 %q: want 64 lowercase hex digits", f.Name, f.SHA256)
		}
		if f.Size < 0 || f.Size > MaxPayloadSize {
			return fmt.Errorf("file %q: size %d: want 0 to %d", f.Name, f.Size, int64(MaxPayloadSize))
		}
	}
	return nil
}

// VerifyNetboot checks that sig (images.sig's content) is a signature of
// doc (images.json's) by one of keys, and only then parses it (it
// returns the key that signed it); it
// accepts only the exact bytes Marshal writes. Any failure wraps
// ErrInvalidNetboot.
func VerifyNetboot(doc, sig []byte, keys []PublicKey) (NetbootManifest, PublicKey, error) {
	return verifyDoc[NetbootManifest](netbootDoc, doc, sig, keys)
}

var netbootDoc = docKind{ErrInvalidNetboot, NetbootFile, NetbootSignature, "the netboot tree",
	"rebuild the netboot tree with the mkimage that built this initramfs", MaxManifestSize}
