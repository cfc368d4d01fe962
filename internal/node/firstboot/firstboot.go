// Package firstboot does the once-per-node work of nodeinit on the mounted
// root: identity from the inventory (by device tree serial-number, card
// serial or MAC: plan.Identify), machine-id, SSH host keys,
// network configuration, growing the root partition and filesystem, and
// making unique what cloned cards share. Every step is idempotent and
// recorded in the root (StatePath) after it completes, so a power cut at
// any point converges on the next boot.
//
// What clones share and what happens to it:
//   - MBR disk identifier: replaced (step "disk-id"). PARTUUIDs change with
//     it, so nodeinit must find the root by something else: the btrfs
//     filesystem UUID or label (blkid-style probe of the partitions), or
//     the partition number on the boot disk. Never root=PARTUUID=.
//   - btrfs fsid: kept. Changing the fsid of a mounted filesystem needs the
//     metadata_uuid feature (btrfstune -m, kernel >= 5.0) and would leave
//     the running kernel with a stale fsid; the fsid only matters when one
//     kernel sees two cards, and each card lives in its own node. A host
//     that verifies flashed cards must look at them one at a time (or by
//     device path), not mount them by UUID.
//   - machine-id, SSH host keys: generated here; the image carries none.
package firstboot

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/cluster/plan"
	"github.com/mkimage/mkimage/internal/node/btrfsctl"
	"github.com/mkimage/mkimage/internal/node/rootdev"
)

// Env is what Run works on. Paths are absolute; on the node Root is
// /newroot, Sys /sys and Dev /dev; tests use temporary trees.
type Env struct {
	Root string // the mounted btrfs root, read-write
	Sys  string // sysfs
	Dev  string // devtmpfs
	// Proc and Run are bind-mounted into the root for the hooks
	// (HooksDir) with Sys and Dev; empty means /proc and /run.
	Proc string
	Run  string
	// RootPart is the kernel name of the root partition (e.g. "mmcblk0p2",
	// "vda2"), as nodeinit found it. Empty: partition steps are skipped.
	RootPart string
	Config   *plan.Baked
	// Log gets one line per event ("nodeinit: firstboot: ...").
	Log func(format string, args ...any)
}

// Result tells nodeinit who this node is; pass Identity.Plan to policy.
type Result struct {
	Identity plan.Identity
	Ran      []string // steps run this boot
}

// Step names, in the order they run.
const (
	StepMachineID      = "machine-id"
	StepSSHHostKeys    = "ssh-host-keys"
	StepHostname       = "hostname"
	StepHosts          = "hosts"
	StepNetwork        = "network"
	StepAuthorizedKeys = "authorized-keys"
	StepTimezone       = "timezone"
	StepDiskID         = "disk-id"
	StepGrowPartition  = "grow-partition"
	StepGrowFilesystem = "grow-filesystem"
	StepSubvolumes     = "subvolumes"
)

// identitySteps depend on which node this is; they run again when the card
// moves to a board with another MAC.
var identitySteps = []string{StepHostname, StepHosts, StepNetwork}

type step struct {
	name string
	run  func(*runner) error
}

var steps = []step{
	{StepMachineID, (*runner).machineID},
	{StepSSHHostKeys, (*runner).sshHostKeys},
	{StepHostname, (*runner).hostname},
	{StepHosts, (*runner).hosts},
	{StepNetwork, (*runner).network},
	{StepAuthorizedKeys, (*runner).authorizedKeys},
	{StepTimezone, (*runner).timezone},
	{StepDiskID, (*runner).diskID},
	{StepGrowPartition, (*runner).growPartition},
	{StepGrowFilesystem, (*runner).growFilesystem},
	{StepSubvolumes, (*runner).subvolumes},
}

type runner struct {
	Env
	id    plan.Identity
	state *State
}

// Run identifies the node and runs every first-boot step not yet done,
// then the root's hooks (HooksDir). A failed step is logged, left
// unrecorded (so it runs again next boot) and returned in the joined
// error; the others still run. The Result is valid even with an error.
//
// Log lines: "nodeinit: firstboot: node NAME (MAC on IFACE)" (with
// "KEY VALUE; " before the MAC when a serial named the node), one
// "nodeinit: firstboot: already done: STEP, ..." line for the steps a
// previous boot recorded, "nodeinit: firstboot: STEP done (TIME)" as
// each step is recorded, and "nodeinit: firstboot: /etc/ssh/KEY kept,
// written before a power cut (FINGERPRINT)" for a host key a cut
// ssh-host-keys had written.
func Run(ctx context.Context, env Env) (Result, error) {
	if env.Log == nil {
		env.Log = func(string, ...any) {}
	}
	if env.Config == nil {
		return Result{}, errors.New("firstboot: no cluster config")
	}
	id, err := plan.Identify(env.Sys, env.RootPart, env.Config)
	var conflict *plan.ConflictError
	var idErr error
	switch {
	case errors.As(err, &conflict) && id.Plan.Name != "":
		// Neither node's address is safe to take: boot as an unknown node
		// (DHCP), reachable, and say loudly why.
		env.Log("nodeinit: firstboot: error: %v; fix the inventory; booting as unknown node %s (DHCP)", err, id.Plan.Name)
		idErr = fmt.Errorf("firstboot: %w", err)
	case err != nil:
		return Result{}, fmt.Errorf("firstboot: %w", err)
	case !id.Known && len(env.Config.Nodes) > 0:
		// With no inventory at all (no cluster config) every node is
		// unknown and nothing needs saying.
		env.Log("nodeinit: firstboot: warning: %s; hostname %s, DHCP", notInInventory(id), id.Plan.Name)
	}
	r := &runner{Env: env, id: id}
	res := Result{Identity: id}
	st, err := ReadState(env.Root)
	if err != nil {
		if st == nil {
			return res, errors.Join(idErr, err)
		}
		env.Log("nodeinit: firstboot: %v", err)
	}
	r.state = st
	switch {
	case st.Node != "" && st.Node != id.Plan.Name:
		env.Log("nodeinit: firstboot: card moved from %s (%s) to %s (%s); redoing %v", st.Node, st.MAC, id.Plan.Name, id.Plan.MAC, identitySteps)
		for _, s := range identitySteps {
			delete(st.Done, s)
		}
	case st.MAC != "" && st.MAC != id.Plan.MAC:
		// Same node, new MAC (random per boot on some boards): the
		// network configuration names the MAC.
		env.Log("nodeinit: firstboot: %s: MAC changed from %s to %s; redoing %v", id.Plan.Name, st.MAC, id.Plan.MAC, identitySteps)
		for _, s := range identitySteps {
			delete(st.Done, s)
		}
	}
	st.Node, st.MAC = id.Plan.Name, id.Plan.MAC
	if id.Known && id.By != plan.KeyMAC {
		env.Log("nodeinit: firstboot: node %s (%s %s; %s on %s)", id.Plan.Name, id.By, id.Value, id.Plan.MAC, id.Iface)
	} else {
		env.Log("nodeinit: firstboot: node %s (%s on %s)", id.Plan.Name, id.Plan.MAC, id.Iface)
	}
	var already []string
	for _, s := range steps {
		if _, done := st.Done[s.name]; done {
			already = append(already, s.name)
		}
	}
	for name := range st.Done {
		if strings.HasPrefix(name, hookPrefix) {
			already = append(already, name)
		}
	}
	if len(already) > 0 {
		slices.Sort(already[len(already)-countPrefix(already, hookPrefix):])
		env.Log("nodeinit: firstboot: already done: %s", strings.Join(already, ", "))
	}
	errs := []error{idErr}
	failed := map[string]bool{}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		if _, done := st.Done[s.name]; done {
			continue
		}
		if s.name == StepGrowFilesystem && failed[StepGrowPartition] {
			continue
		}
		start := time.Now()
		if err := s.run(r); err != nil {
			failed[s.name] = true
			err = fmt.Errorf("firstboot: %s: %w", s.name, err)
			env.Log("nodeinit: %v", err)
			errs = append(errs, err)
			continue
		}
		// Make the step's own writes durable before claiming it done.
		rootdev.Sync(r.Root)
		st.Done[s.name] = time.Now().UTC()
		if err := st.write(env.Root); err != nil {
			errs = append(errs, fmt.Errorf("firstboot: recording %s: %w", s.name, err))
			return res, errors.Join(errs...)
		}
		res.Ran = append(res.Ran, s.name)
		env.Log("nodeinit: firstboot: %s done (%v)", s.name, time.Since(start).Round(time.Millisecond))
	}
	if ctx.Err() == nil {
		if err := r.runHooks(ctx, &res); err != nil {
			errs = append(errs, err)
		}
	}
	return res, errors.Join(errs...)
}

func countPrefix(list []string, prefix string) int {
	n := 0
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

func (r *runner) path(rel string) string { return filepath.Join(r.Root, rel) }

func (r *runner) growPartition() error {
	if r.RootPart == "" {
		r.Log("nodeinit: firstboot: root partition unknown; not growing it")
		return nil
	}
	d, err := findRootDisk(r.Sys, r.Dev, r.RootPart)
	if err != nil {
		return err
	}
	_, err = growPartition(d, r.Log)
	return err
}

func (r *runner) growFilesystem() error {
	if !btrfsctl.Is(r.Root) {
		r.Log("nodeinit: firstboot: %s is not btrfs; filesystem not grown", r.Root)
		return nil
	}
	return btrfsctl.Grow(r.Root)
}

func (r *runner) diskID() error {
	if r.RootPart == "" {
		return nil
	}
	d, err := findRootDisk(r.Sys, r.Dev, r.RootPart)
	if err != nil {
		return err
	}
	id, err := newDiskID(d.DiskPath)
	if err == nil {
		r.Log("nodeinit: firstboot: %s: new disk identifier %02x%02x%02x%02x", d.DiskPath, id[3], id[2], id[1], id[0])
	}
	return err
}

// Subvolumes made at first boot: snapshots must not be inside the
// snapshotted subvolume, and containers get their own for separate
// snapshots.
func (r *runner) subvolumes() error {
	dirs := []string{"var/lib/lxc"}
	snap := "/.snapshots"
	if b := r.id.Plan.Backup; b != nil {
		snap = b.Dir
	}
	dirs = append([]string{snap}, dirs...)
	dirs = slices.Compact(dirs)
	for _, d := range dirs {
		created, err := ensureSubvolume(r.Root, d)
		if err != nil {
			return err
		}
		if created {
			r.Log("nodeinit: firstboot: created subvolume %s", filepath.Join("/", d))
		}
	}
	return nil
}

// notInInventory says what this machine was looked up by.
func notInInventory(id plan.Identity) string {
	m := id.Machine
	if m.SerialNumber == "" && len(m.CardSerials) == 0 {
		return fmt.Sprintf("MAC %s (%s) is not in the inventory", id.Plan.MAC, id.Iface)
	}
	s := fmt.Sprintf("MAC %s (%s)", id.Plan.MAC, id.Iface)
	if m.SerialNumber != "" {
		s += ", serial_number " + m.SerialNumber
	}
	for _, c := range m.CardSerials {
		s += ", card_serial " + c
	}
	return s + ": none is in the inventory"
}
