package firstboot

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/atomicfile"
	"github.com/mkimage/mkimage/internal/cluster/plan"
	"github.com/mkimage/mkimage/internal/node/netup"
)

// nicWait is how long first boot waits for a network interface to show
// up: the node may be identified by its MAC, and needs one either way.
const nicWait = 5 * time.Second

// Node is who Boot found this node to be.
type Node struct {
	// Plan is the node's plan; its Name, when known, is the node's
	// hostname (from the MAC without a cluster config).
	Plan plan.Plan
	// Policy: a cluster config is baked in and Plan is this node's, so
	// its policy applies.
	Policy bool
}

// Boot is nodeinit's first-boot step: it reads the cluster config baked
// in at bakedPath into env.Config, has writable make the root at
// env.Root writable (nodeinit remounts it when rootflags made it
// read-only), and runs the steps and hooks not yet done on this card.
// Nothing it meets stops the boot: what fails is logged, first-boot work
// is retried at the next boot, and the node goes on into its root.
func Boot(ctx context.Context, env Env, bakedPath string, writable func() error) Node {
	if env.Log == nil {
		env.Log = func(string, ...any) {}
	}
	var node Node
	b, err := plan.Read(bakedPath)
	withConfig := err == nil
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// A card without a cluster config still needs what makes it a
		// node of its own (machine-id, host keys, a grown root, a
		// hostname from its MAC, DHCP) and the root's own hooks (a
		// Debian root configures its packages there); only policy needs
		// the config.
		env.Log("nodeinit: first-boot: no cluster config (%s): defaults (hostname from the MAC, DHCP), policy skipped", bakedPath)
		b = &plan.Baked{}
	case err != nil:
		env.Log("nodeinit: first-boot: cluster config unreadable, first boot and policy skipped: %v", err)
		return node
	}
	built, _ := json.Marshal(b) // before the placement, for BootedFile
	placeContainers(env, b)
	env.Config = b
	werr := writable()
	if werr != nil {
		env.Log("nodeinit: first-boot: %v; first boot skipped (it runs at the next boot)", werr)
	} else {
		if !netup.WaitForNIC(filepath.Join(env.Sys, "class/net"), nicWait) {
			env.Log("nodeinit: first-boot: no network interface after %v", nicWait)
		}
		start := time.Now()
		res, err := Run(ctx, env)
		switch {
		case err != nil:
			env.Log("nodeinit: first-boot: incomplete after %v, the failed steps run again at the next boot: %v", time.Since(start).Round(time.Millisecond), err)
		case len(res.Ran) == 0:
			env.Log("nodeinit: first-boot: nothing to do")
		default:
			env.Log("nodeinit: first-boot: complete in %v (%s)", time.Since(start).Round(time.Millisecond), strings.Join(res.Ran, ", "))
		}
		if res.Identity.Plan.Name != "" {
			node = Node{Plan: res.Identity.Plan, Policy: true}
		}
	}
	if !withConfig {
		node.Policy = false
		return node
	}
	if !node.Policy {
		// Policy still needs to know who this node is.
		id, err := plan.Identify(env.Sys, env.RootPart, b)
		var conflict *plan.ConflictError
		switch {
		case errors.As(err, &conflict) && id.Plan.Name != "":
			env.Log("nodeinit: policy: error: %v; applying the policy of unknown node %s", err, id.Plan.Name)
			node = Node{Plan: id.Plan, Policy: true}
		case err != nil:
			env.Log("nodeinit: policy: cannot identify this node, policy skipped: %v", err)
		default:
			node = Node{Plan: id.Plan, Policy: true}
		}
	}
	if werr == nil && withConfig && node.Policy && node.Plan.Name != "" && len(b.Nodes) > 0 {
		// For nodeinit container, run later from the booted root.
		who, _ := json.Marshal(plan.BootedNode{Name: node.Plan.Name, MAC: node.Plan.MAC})
		for path, data := range map[string][]byte{plan.BootedFile: built, plan.NodeFile: who} {
			if err := atomicfile.WriteFileIfChanged(filepath.Join(env.Root, path), data, 0o644); err != nil {
				env.Log("nodeinit: first-boot: %v", err)
			}
		}
	}
	return node
}

// placeContainers applies the root's plan.PlacementFile (containers
// moved to another node) to the baked plans, so identity, first boot
// and policy all see where the containers run now. A file that cannot be
// applied is logged and the config is taken as built: a moved
// container's own directory already left its old node, so the worst
// left is a gateway routing through the old node.
func placeContainers(env Env, b *plan.Baked) {
	moved, err := plan.ReadPlacement(env.Root)
	if err == nil {
		err = b.Place(moved)
	}
	if err != nil {
		env.Log("nodeinit: placement: error: %v; containers placed as the cluster config says", err)
		return
	}
	for _, ct := range moved.Containers() {
		env.Log("nodeinit: placement: container %s runs on node %s (%s)", ct, moved[ct], plan.PlacementFile)
	}
}
