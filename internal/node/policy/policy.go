// Package policy applies a node's plan at every boot, from nodeinit before
// switch_root: IPv4 forwarding, FORWARD/NAT rules, static routes, the CPU
// governor, the LXC bridge and container network pinning, the containers'
// anti-spoofing rules, lxcfs and the snapshot schedule. Kernel settings
// (sysctl, netfilter, routes, bridge, governor) survive switch_root; files
// go into the root for its services.
// Network parts act in the calling thread's network namespace.
package policy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mkimage/mkimage/internal/atomicfile"
	"github.com/mkimage/mkimage/internal/cluster/plan"
)

// Env is what Apply works on; on the node Root is /newroot, Proc /proc and
// Sys /sys.
type Env struct {
	Root string
	Proc string
	Sys  string
	Node plan.Plan // firstboot.Result.Identity.Plan
	Log  func(format string, args ...any)
}

// Apply runs every part; a failing part is logged and returned in the
// joined error, the others still run (a node that boots with part of its
// policy is better than one that does not boot).
func Apply(ctx context.Context, env Env) error {
	if env.Log == nil {
		env.Log = func(string, ...any) {}
	}
	parts := []struct {
		name string
		fn   func(Env) error
	}{
		{"ip_forward", IPForward},
		{"netfilter", Netfilter},
		{"routes", Routes},
		{"governor", Governor},
		{"lxc", LXC},
		{"antispoof", Antispoof},
		{"backup", Backup},
		{"role", RoleFile},
		{"ingress", Ingress},
		{"i2p", I2P},
	}
	var errs []error
	for _, p := range parts {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		if err := p.fn(env); err != nil {
			err = fmt.Errorf("policy: %s: %w", p.name, err)
			env.Log("nodeinit: %v", err)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RoleFile writes the node's role into the root (plan.RoleFile) for the
// update command; unchanged, it is left alone.
func RoleFile(env Env) error {
	if env.Node.Role == "" {
		return nil
	}
	return writeIfChanged(filepath.Join(env.Root, plan.RoleFile), env.Node.Role+"\n", 0o644)
}

// Ingress writes the gateway's haproxy.cfg (plan.HAProxyPath) from the
// plan into the root haproxy runs in (the node's, or the container's
// that runs it: daemonRoot), so a changed inventory or service list
// reaches the gateway with the next build's initramfs; haproxy starts
// after switch_root (in the container, when LXC starts it). A node
// without one keeps its root's file.
func Ingress(env Env) error {
	node, err := os.OpenRoot(env.Root)
	if err != nil {
		return err
	}
	defer node.Close()
	if env.Node.HAProxyCfg == "" {
		// No longer a gateway: its own haproxy, if any, may start again.
		return keepOff(node, plan.RunsHAProxy, "")
	}
	r, where, err := daemonRoot(env, node, plan.RunsHAProxy)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := atomicfile.WriteFileIfChangedIn(r, plan.HAProxyPath, []byte(env.Node.HAProxyCfg), 0o644); err != nil {
		return err
	}
	if where == "" {
		return nil // the package enables it on the node
	}
	if hasSystemd(r) {
		if err := atomicfile.WriteFileIfChangedIn(r, haproxyInContainer, []byte(haproxyInContainerConf), 0o644); err != nil {
			return err
		}
	}
	found, err := enableService(r, "haproxy", true)
	if err == nil && !found {
		env.Log("nodeinit: ingress: %s has neither systemd nor /etc/init.d/haproxy; haproxy not enabled", label(where))
	}
	return err
}

// haproxyInContainer is a drop-in for haproxy.service in a container:
// the unit bind-mounts /dev/log into haproxy's chroot, a mount namespace
// LXC's AppArmor profile forbids ("Failed to set up mount namespacing:
// Permission denied", and haproxy never starts). The generated
// haproxy.cfg logs to stdout, the journal, so it needs no /dev/log.
const (
	haproxyInContainer     = "etc/systemd/system/haproxy.service.d/mkimage-container.conf"
	haproxyInContainerConf = generated + "[Service]\nBindReadOnlyPaths=\n"
)

// IPForward writes net.ipv4.ip_forward. /proc/sys/net is per network
// namespace: the value lands in the calling thread's namespace.
func IPForward(env Env) error {
	v := "0\n"
	if env.Node.IPForward {
		v = "1\n"
	}
	return os.WriteFile(filepath.Join(env.Proc, "sys/net/ipv4/ip_forward"), []byte(v), 0o644)
}

// Governor writes the plan's governor to every cpufreq policy. No cpufreq
// (QEMU virt, a kernel without the driver) is not an error.
func Governor(env Env) error {
	g := env.Node.Governor
	if g == "" {
		return nil
	}
	files, _ := filepath.Glob(filepath.Join(env.Sys, "devices/system/cpu/cpufreq/policy*/scaling_governor"))
	if len(files) == 0 {
		env.Log("nodeinit: cpufreq: not available, governor skipped")
		return nil
	}
	var errs []error
	for _, f := range files {
		dir := filepath.Dir(f)
		if avail, err := os.ReadFile(filepath.Join(dir, "scaling_available_governors")); err == nil {
			if !contains(strings.Fields(string(avail)), g) {
				errs = append(errs, fmt.Errorf("%s: governor %q not available (kernel offers: %s)", dir, g, strings.TrimSpace(string(avail))))
				continue
			}
		}
		if err := os.WriteFile(f, []byte(g+"\n"), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
		}
	}
	if len(errs) == 0 {
		env.Log("nodeinit: cpufreq: governor %s on %d policies", g, len(files))
	}
	return errors.Join(errs...)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
