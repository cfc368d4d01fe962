package firstboot

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestCarry(t *testing.T) {
	from, to := t.TempDir(), t.TempDir()
	write := func(root, rel, data string, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(from, "etc/machine-id", "0123\n", 0o444)
	write(from, "etc/ssh/ssh_host_ed25519_key", "private", 0o600)
	write(from, "etc/ssh/ssh_host_ed25519_key.pub", "public", 0o644)
	write(from, "etc/hostname", "old\n", 0o644)
	write(to, "etc/hostname", "new\n", 0o644)
	write(to, "etc/machine-id", "", 0o444) // as the new root was built
	now := time.Unix(1700000000, 0).UTC()
	st := &State{Version: 1, Node: "n1", MAC: "52:54:00:00:00:01", HostKeys: map[string]string{"ed25519": "SHA256:x"}, Done: map[string]time.Time{}}
	for _, s := range []string{StepMachineID, StepSSHHostKeys, StepHostname, StepNetwork, StepDiskID, StepGrowPartition, StepGrowFilesystem, StepSubvolumes, hookPrefix + "10-configure"} {
		st.Done[s] = now
	}
	if err := st.write(from); err != nil {
		t.Fatal(err)
	}

	if err := Carry(from, to); err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]string{
		"etc/machine-id":                   "0123\n",
		"etc/ssh/ssh_host_ed25519_key":     "private",
		"etc/ssh/ssh_host_ed25519_key.pub": "public",
		"etc/hostname":                     "new\n", // the new root's own, remade by its first boot
	} {
		b, err := os.ReadFile(filepath.Join(to, rel))
		if err != nil || string(b) != want {
			t.Errorf("%s: %q (%v), want %q", rel, b, err, want)
		}
	}
	if fi, err := os.Stat(filepath.Join(to, "etc/ssh/ssh_host_ed25519_key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("private host key mode: %v %v", fi.Mode(), err)
	}
	if _, err := os.Stat(filepath.Join(to, "etc/ssh/ssh_host_ecdsa_key")); !os.IsNotExist(err) {
		t.Errorf("a key the running root lacks appeared: %v", err)
	}
	got, err := ReadState(to)
	if err != nil {
		t.Fatal(err)
	}
	var done []string
	for s := range got.Done {
		done = append(done, s)
	}
	slices.Sort(done)
	want := []string{StepDiskID, StepGrowFilesystem, StepGrowPartition, StepMachineID, StepSSHHostKeys}
	if !slices.Equal(done, want) || got.Node != "n1" || got.HostKeys["ed25519"] != "SHA256:x" {
		t.Errorf("carried record: node %q keys %v done %v, want done %v", got.Node, got.HostKeys, done, want)
	}

	// A running root that never ran first boot (no cluster config) has
	// nothing to carry.
	empty, to2 := t.TempDir(), t.TempDir()
	if err := Carry(empty, to2); err != nil {
		t.Fatal(err)
	}
}
