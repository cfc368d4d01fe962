package builder

import (
	"fmt"
	"os"
	"path/filepath"
)

// pending is an output file written under a temporary name beside its
// final one. Commit renames it into place; Discard removes it. A build
// that fails or is interrupted therefore never leaves a file under the
// final name.
type pending struct {
	final string
	f     *os.File
}

func createPending(final string) (*pending, error) {
	dir := filepath.Dir(final)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("output %s: directory %s does not exist", final, dir)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(final)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("output %s: %w", final, err)
	}
	return &pending{final: final, f: f}, nil
}

// Commit syncs the file and renames it to its final name.
func (p *pending) Commit() error {
	if err := p.f.Sync(); err != nil {
		p.Discard()
		return fmt.Errorf("output %s: sync: %w", p.final, err)
	}
	if err := p.f.Close(); err != nil {
		p.Discard()
		return fmt.Errorf("output %s: %w", p.final, err)
	}
	if err := os.Chmod(p.f.Name(), 0o644); err != nil {
		p.Discard()
		return err
	}
	if err := os.Rename(p.f.Name(), p.final); err != nil {
		p.Discard()
		return fmt.Errorf("output %s: %w", p.final, err)
	}
	return nil
}

// Discard removes the temporary file; safe after Commit.
func (p *pending) Discard() {
	p.f.Close()
	os.Remove(p.f.Name())
}

// writeFileAtomic writes data to path through a pending file.
func writeFileAtomic(path string, data []byte) error {
	p, err := createPending(path)
	if err != nil {
		return err
	}
	if _, err := p.f.Write(data); err != nil {
		p.Discard()
		return fmt.Errorf("output %s: %w", path, err)
	}
	return p.Commit()
}

// fileSHA256 returns the hex sha256 of a file.
