package firstboot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// StatePath is where first-boot progress lives, relative to the root.
const StatePath = "var/lib/nodeinit/firstboot.json"

// State records which steps are done. It is rewritten atomically after
// every step, so a power cut loses at most the step in progress, which
// is idempotent and simply runs again.
type State struct {
	Version int                  `json:"version"`
	Node    string               `json:"node"`
	MAC     string               `json:"mac"`
	Done    map[string]time.Time `json:"done"`
}

// ReadState reads the state under root; a missing file is an empty state.
func ReadState(root string) (*State, error) {
	st := &State{Version: 1, Done: map[string]time.Time{}}
	data, err := os.ReadFile(filepath.Join(root, StatePath))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, st); err != nil {
		// A torn file cannot come from WriteFileAtomic; treat it as
		// "nothing done": every step is safe to repeat.
		return &State{Version: 1, Done: map[string]time.Time{}}, fmt.Errorf("%s: %v (starting over)", filepath.Join(root, StatePath), err)
	}
	if st.Done == nil {
		st.Done = map[string]time.Time{}
	}
	return st, nil
}

func (s *State) write(root string) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(root, StatePath), append(data, '\n'), 0o644)
}

// WriteFileAtomic writes data to a temporary file beside path, syncs it,
// renames it over path and syncs the directory: after a power cut path
// holds either the old or the new content, never a mix.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
