package policy

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"

	"github.com/mkimage/mkimage/internal/atomicfile"
	"github.com/mkimage/mkimage/internal/cluster/plan"
)

// Replan applies to a running node what a container move changes in its
// plan, from before to env.Node: the routes before had and env.Node
// lacks are deleted and env.Node's installed (a gateway now reaches the
// container through its new node), its containers' configs pinned (the
// one that came here) and the antispoof table rebuilt with them. The
// moved container's directory is the move's own work.
func Replan(env Env, before plan.Plan) error {
	if env.Log == nil {
		env.Log = func(string, ...any) {}
	}
	var errs []error
	for _, r := range before.Routes {
		if slices.Contains(env.Node.Routes, r) {
			continue
		}
		deleted, err := unroute(before.MAC, r.Destination, r.Via, r.Dev)
		if err != nil {
			errs = append(errs, fmt.Errorf("route %s via %s: %w", r.Destination, r.Via, err))
		} else if deleted {
			env.Log("nodeinit: placement: route %s via %s deleted", r.Destination, r.Via)
		}
	}
	for _, r := range env.Node.Routes {
		if !slices.Contains(before.Routes, r) {
			env.Log("nodeinit: placement: route %s via %s", r.Destination, r.Via)
		}
	}
	if err := Routes(env); err != nil {
		errs = append(errs, err)
	}
	if x := env.Node.LXC; x != nil {
		for _, ct := range x.Containers {
			if err := pinContainer(env, ct); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if env.Node.LXC != nil || before.LXC != nil {
		if err := Antispoof(env); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// PlaceContainer records in env.Root's plan.PlacementFile that container
// runs on node (no line when that is the cluster config's node) and
// re-plans this node at once (Replan): on the node it left, the one it
// came to and the gateways alike. The placement is checked against the
// config the node booted with (plan.ReadBooted) before it is written, so
// one that could not apply at the next boot is refused.
func PlaceContainer(env Env, container, node string) error {
	if env.Log == nil {
		env.Log = func(string, ...any) {}
	}
	booted, err := plan.ReadBooted(env.Root)
	if err != nil {
		return err
	}
	before, err := booted.Plan(booted.Placement)
	if err != nil {
		return fmt.Errorf("%s: %w", plan.PlacementFile, err)
	}
	moved := maps.Clone(booted.Placement)
	if booted.Config.ContainerNode(container) == node {
		delete(moved, container)
	} else {
		moved[container] = node
	}
	after, err := booted.Plan(moved)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(env.Root, plan.PlacementFile), moved.Format(), 0o644); err != nil {
		return err
	}
	env.Log("nodeinit: placement: container %s runs on node %s (%s)", container, node, plan.PlacementFile)
	env.Node = after
	return Replan(env, before)
}
