package firstboot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/atomicfile"
	"github.com/mkimage/mkimage/internal/node/sshkey"
)

// carriedSteps are the steps whose result a new version of the root
// takes over from the running one (Carry): the node's identity, which
// must not change with an update, and what was done to the card itself.
// The others (hostname, hosts, network, authorized keys, timezone,
// subvolumes inside the root, and the root's own hooks) run again on the
// new root: they follow the plan and the root baked into that version.
var carriedSteps = []string{StepMachineID, StepSSHHostKeys, StepDiskID, StepGrowPartition, StepGrowFilesystem}

// carriedFiles are the files, relative to the root, those steps wrote.
func carriedFiles() []string {
	files := []string{"etc/machine-id"}
	for _, kt := range sshkey.HostTypes {
		base := "etc/ssh/ssh_host_" + kt.Name + "_key"
		files = append(files, base, base+".pub")
	}
	return files
}

// Carry gives the root at to (a new version's writable root, not yet
// booted) the identity of the root at from (the running version's): its
// machine-id and SSH host keys, and the first-boot record of the steps
// that made them, so the new version's first boot keeps them instead of
// making new ones (a node's keys never change with an update). A file
// from does not have is left as the new root has it. Each file is written
// atomically and the record last, so a cut Carry is simply repeated.
func Carry(from, to string) error {
	st, err := ReadState(from)
	if err != nil {
		return fmt.Errorf("first-boot record of %s: %w", from, err)
	}
	for _, rel := range carriedFiles() {
		src := filepath.Join(from, rel)
		fi, err := os.Lstat(src)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", src)
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		if err := atomicfile.WriteFile(filepath.Join(to, rel), data, fi.Mode().Perm()); err != nil {
			return err
		}
	}
	carried := &State{Version: st.Version, Node: st.Node, MAC: st.MAC, HostKeys: st.HostKeys, Done: map[string]time.Time{}}
	for name, t := range st.Done {
		if !strings.HasPrefix(name, hookPrefix) && slices.Contains(carriedSteps, name) {
			carried.Done[name] = t
		}
	}
	return carried.write(to)
}
