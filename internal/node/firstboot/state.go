package firstboot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/mkimage/mkimage/internal/atomicfile"
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
	// HostKeys are the fingerprints ("SHA256:...", as ssh-keygen -l
	// prints them) of the SSH host keys first boot made, by type
	// ("ed25519", "ecdsa"), each recorded before its key is written: a
	// key found whole with its recorded fingerprint after a power cut is
	// this node's and is kept, so a host key once written never changes.
	HostKeys map[string]string `json:"host_keys,omitempty"`
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
		return &State{Version: 1, Done: map[string]time.Time{}}, fmt.Errorf("%s: %w (starting over)", filepath.Join(root, StatePath), err)
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
	return atomicfile.WriteFile(filepath.Join(root, StatePath), append(data, '\n'), 0o644)
}
