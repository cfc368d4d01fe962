package main

// First boot and policy: the steps that need the cluster config. Neither
// may stop the node from booting: what fails is logged, first-boot work is
// retried at the next boot, and the node goes on into its root.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/cluster/plan"
	"github.com/mkimage/mkimage/internal/node/firstboot"
	"github.com/mkimage/mkimage/internal/node/netup"
	"github.com/mkimage/mkimage/internal/node/policy"
	"github.com/mkimage/mkimage/internal/node/rootdev"
)

// nicWait is how long first boot waits for a network interface to show
// up: the node may be identified by its MAC, and needs one either way.
const nicWait = 5 * time.Second

// logf prints a line from the firstboot and policy packages, which start
// their lines with "nodeinit: " themselves.
func logf(format string, a ...any) {
	line := fmt.Sprintf(format, a...)
	if !strings.HasPrefix(line, "nodeinit: ") {
		line = "nodeinit: " + line
	}
	fmt.Fprintln(os.Stdout, line)
}

// firstBoot reads the baked cluster config, makes the root writable and
// runs the first-boot steps not yet done on this card.
func firstBoot(st *state) error {
	b, err := plan.Read(plan.BakedPath)
	withConfig := err == nil
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// A card without a cluster config still needs what makes it a
		// node of its own (machine-id, host keys, a grown root, a
		// hostname from its MAC, DHCP) and the root's own hooks (a
		// Debian root configures its packages there); only policy needs
		// the config.
		say("first-boot: no cluster config (%s): defaults (hostname from the MAC, DHCP), policy skipped", plan.BakedPath)
		b = &plan.Baked{}
	case err != nil:
		say("first-boot: cluster config unreadable, first boot and policy skipped: %v", err)
		return nil
	default:
		st.cluster = b
	}
	if err := st.rootWritable(); err != nil {
		say("first-boot: %v; first boot skipped (it runs at the next boot)", err)
	} else {
		if !netup.WaitForNIC("/sys/class/net", nicWait) {
			say("first-boot: no network interface after %v", nicWait)
		}
		start := time.Now()
		res, err := firstboot.Run(context.Background(), firstboot.Env{
			Root: newRoot, Sys: "/sys", Dev: "/dev", Proc: "/proc", Run: "/run",
			RootPart: rootdev.Part(st.cfg.Root, st.rootDev), Config: b, Log: logf,
		})
		switch {
		case err != nil:
			say("first-boot: incomplete after %v, the failed steps run again at the next boot: %v", time.Since(start).Round(time.Millisecond), err)
		case len(res.Ran) == 0:
			say("first-boot: nothing to do")
		default:
			say("first-boot: complete in %v (%s)", time.Since(start).Round(time.Millisecond), strings.Join(res.Ran, ", "))
		}
		if res.Identity.Plan.Name != "" {
			st.node, st.haveNode = res.Identity.Plan, true
		}
	}
	if !withConfig {
		st.haveNode = false
		return nil
	}
	if !st.haveNode {
		// Policy still needs to know who this node is.
		id, err := plan.Identify("/sys", rootdev.Part(st.cfg.Root, st.rootDev), b)
		var conflict *plan.ConflictError
		switch {
		case errors.As(err, &conflict) && id.Plan.Name != "":
			say("policy: error: %v; applying the policy of unknown node %s", err, id.Plan.Name)
			st.node, st.haveNode = id.Plan, true
		case err != nil:
			say("policy: cannot identify this node, policy skipped: %v", err)
		default:
			st.node, st.haveNode = id.Plan, true
		}
	}
	return nil
}

// rootWritable makes the root writable for first boot or preconfigure.
func (st *state) rootWritable() error {
	ro, err := rootdev.Writable(newRoot, st.cfg.RootFlags, say)
	st.remountRO = st.remountRO || ro
	return err
}

// applyPolicy applies the node's policy, reads it back and puts the root
// back as the command line mounted it.
func applyPolicy(st *state) error {
	if st.haveNode {
		env := policy.Env{Root: newRoot, Proc: "/proc", Sys: "/sys", Node: st.node, Log: logf}
		start := time.Now()
		if err := policy.Apply(context.Background(), env); err != nil {
			say("policy: applied with errors in %v (booting anyway): %v", time.Since(start).Round(time.Millisecond), err)
		} else {
			say("policy: applied for %s (role %s) in %v", st.node.Name, st.node.Role, time.Since(start).Round(time.Millisecond))
		}
		if bad := policy.Report(env); bad > 0 {
			say("policy: %d parts differ from the plan", bad)
		}
	}
	rootdev.Restore(newRoot, st.cfg.RootFlags, st.remountRO, say)
	return nil
}
