package flash

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// DefaultMaxSize is the largest block device written without --force:
// bigger than any card the clusters use, smaller than most system disks.
const DefaultMaxSize = 128 << 30

// Target is one place to write the image to.
type Target struct {
	Path     string
	Block    bool     // a block device; otherwise a regular file
	Size     int64    // a block device's size; 0 for files, which grow
	Disk     *Disk    // block devices only
	Problems []string // why writing could harm something; refused unless forced
	id       string   // device number or inode, to catch one target named twice
}

// Inspect looks at a target path: a block device (whole disk) or a
// regular file, which is created when absent.
func (s Sys) Inspect(path string, maxSize int64) (Target, error) {
	t := Target{Path: path}
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(filepath.Dir(path)); err != nil {
			return t, fmt.Errorf("target %s: its directory does not exist", path)
		}
		return t, nil
	}
	if err != nil {
		return t, fmt.Errorf("target %s: %w", path, err)
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	switch {
	case fi.Mode().IsRegular():
		if st != nil {
			t.id = fmt.Sprintf("file %d:%d", st.Dev, st.Ino)
		}
		return t, nil
	case fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0:
		t.Block = true
		d, err := s.DiskOf(path)
		if err != nil {
			return t, fmt.Errorf("target %s: %w", path, err)
		}
		t.Disk, t.Size, t.id = d, d.Size, "dev "+d.Dev
		if t.Problems, err = s.Problems(d, maxSize); err != nil {
			return t, fmt.Errorf("target %s: %w", path, err)
		}
		return t, nil
	}
	return t, fmt.Errorf("target %s is neither a block device nor a regular file", path)
}

// Check refuses the whole run before anything is written: a target too
// small for the image, one target named twice, and (unless force) the
// safety problems Inspect found. The error lists every finding.
func Check(targets []Target, imageSize int64, force bool) error {
	var errs []string
	seen := map[string]string{}
	for _, t := range targets {
		if t.Block && t.Size < imageSize {
			errs = append(errs, fmt.Sprintf("%s is %s, smaller than the image (%s; %d < %d bytes): use a bigger card", t.Path, human(t.Size), human(imageSize), t.Size, imageSize))
		}
		key := t.id
		if key == "" {
			key = "path " + filepath.Clean(t.Path)
		}
		if first, ok := seen[key]; ok {
			errs = append(errs, fmt.Sprintf("%s and %s are the same target: name it once", first, t.Path))
		}
		seen[key] = t.Path
		if !force {
			for _, p := range t.Problems {
				errs = append(errs, fmt.Sprintf("%s: %s", t.Path, p))
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	msg := "refusing to write to any target:\n  " + strings.Join(errs, "\n  ")
	if !force && hasProblems(targets) {
		msg += "\n(pass --force to write despite the safety findings; sizes and duplicates cannot be forced)"
	}
	return errors.New(msg)
}

func hasProblems(ts []Target) bool {
	for _, t := range ts {
		if len(t.Problems) > 0 {
			return true
		}
	}
	return false
}
