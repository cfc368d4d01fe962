// Command nodeinit is PID 1 of a node's initramfs (linux/arm64). It mounts
// the kernel filesystems, loads the modules the builder listed, finds and
// mounts the btrfs root and switches into the root's init. Any failure
// of those prints what failed and why and starts a rescue shell on the
// console: a node must never hang silently or panic the kernel.
//
// The steps, in order, each a call into a package under internal/node
// (this file only orders them): mount-early (pid1), config (bootcfg:
// the kernel command line after the baked defaults), modules (modload),
// coldplug, watchdog, netinstall, find-root and mount-root (rootdev, or
// netroot for a diskless root), first-boot (firstboot), policy, hostname
// and switch-root (pid1).
//
// Coldplug (package coldplug; lines "nodeinit: coldplug: ..."): the modules
// the builder carried for coldplug (board key `coldplug`, build flag
// --coldplug) are loaded when a device present matches one of their
// aliases, dependencies first, repeating while loading them adds devices.
// nodeinit.coldplug=SECONDS (default 5, or a duration such as 1500ms)
// bounds how long it keeps looking; 0 turns coldplug off. It logs each
// module it loads and for which modalias, then the devices that still
// have no driver and the regulators bound.
//
// Watchdog (package watchdog; lines "nodeinit: watchdog: ..."): with
// nodeinit.watchdog=SECONDS (an updatable image whose root feeds it), the
// board's hardware watchdog (its module carried for coldplug) is opened
// after coldplug, set to that timeout and fed while the steps run. At
// switch-root it is fed once more and closed without the magic 'V', so
// it stays armed for the root's init to feed; a failed step hands it,
// unfed, to the rescue shell. A version that hangs is so reset, and
// U-Boot's counting script falls back. Without the device it says so and
// the boot goes on.
//
// Netboot (mkimage netboot; packages netup, netinstall, netroot; lines
// "nodeinit: netboot: ..."):
//
//   - netinstall=URL netinstall.sha256=HEX [netinstall.disk=NAME]: the
//     netinstall step brings the network up by DHCP, writes the card
//     image through its block map to the disk (the only one, or NAME),
//     reads it back and checks its sha256, then reboots into it. A
//     failure is logged and the install tried again with backoff until
//     it succeeds (fix the server; no reboot needed); the partition
//     table is written last, so a card left half-written has none and
//     does not boot.
//   - root=http://[HOST][:PORT]/root.img netroot.sha256=HEX: a diskless
//     root. find-root brings the network up by DHCP instead of searching
//     block devices; mount-root fetches the image into RAM (a tmpfs),
//     checks its sha256, and mounts it through a loop device, trying
//     again with backoff as netinstall does. A URL with no host means
//     the server that handed out the lease.
//
// With netboot keys in the initramfs (/etc/nodeinit/netboot-keys, from
// `mkimage netboot --update-key`), both take only what the tree's
// images.json, signed by one of the keys, lists: its signature is
// checked first, then the map's size and sha256, each range before it is
// written, and the image's sha256 from images.json (the command line's
// is not used). Each map range is checked in memory before a byte of it
// is written; a stalled or dropped request is resumed where it stopped.
//
// Versioned roots (an image built with `mkimage build --update-key`; lines
// "nodeinit: version ..."): U-Boot's counting boot script names the
// version it chose as mkimage.version=<id>. mount-root then mounts that
// version's writable live/<id> subvolume, made from the read-only
// roots/<id> at the version's first boot, with the state subvolumes
// (containers, snapshots, home, node identity) mounted into it (package
// versions).
//
// With a cluster config baked in (/etc/nodeinit/cluster.json, from
// `mkimage --config`), two steps run between mounting the root and
// switching into it, on the root (the default subvolume "@", remounted
// read-write for them if rootflags made it read-only, and put back after):
//
//   - first-boot (package firstboot): the node is found in the inventory
//     by device tree serial-number, card serial or MAC (plan.KeyOrder),
//     and the once-per-node steps not yet recorded in the root's
//     /var/lib/nodeinit/firstboot.json run: machine-id, SSH host keys,
//     hostname, hosts, network, authorized keys, timezone, disk id, grow
//     the root partition and the btrfs filesystem, subvolumes. Then the
//     root's own hooks: every executable in /usr/lib/nodeinit/firstboot.d/
//     runs once per node, in name order, chrooted into the root with /proc,
//     /sys, /dev and /run mounted inside it, its output on the console as
//     "nodeinit: hook NAME: ...". A root built from unpacked packages drops
//     its second stage there (say, `dpkg --configure -a`). A failed step
//     or hook is logged and runs again at the next boot (a hook failing
//     also holds back the hooks after it); the boot goes on.
//   - policy (package policy), at every boot: IPv4 forwarding, the
//     FORWARD/NAT rules (nftables table ip nodeinit), static routes, CPU
//     governor, LXC bridge and container network, snapshot schedule. Then
//     it reads back what is in the kernel and prints it
//     ("nodeinit: policy: ip_forward=1", "nodeinit: policy: route ... dev
//     eth0", ...). A failing part is logged; the node still boots.
//
// Then, at every boot, the kernel hostname is set to the node's name from
// the plan ("nodeinit: hostname: NAME"), for roots whose init does not
// read /etc/hostname.
//
// Preconfigure (package preconfigure; nodeinit.preconfigure on the
// command line, from `mkimage --preconfigure` at build time): after mount-root, only the root's hooks
// run (none of the per-node steps: machine-id, host keys, hostname, disk
// id, growth and network stay for each card's own first boot), recorded
// as done in firstboot.json; then any SSH host keys and machine-id the
// packages' scripts made are removed, the root is synced and unmounted,
// "nodeinit: preconfigure: done" is printed and the machine powers off.
// On any failure it prints "nodeinit: preconfigure: failed: WHY" and
// powers off (no rescue shell: nobody is at that console).
//
// Every line it prints starts with "nodeinit: " so tests and people can
// grep the console.
//
// It runs inside u-root's busybox; keep it small and never import the
// builder.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/cluster/plan"
	"github.com/mkimage/mkimage/internal/node/bootcfg"
	"github.com/mkimage/mkimage/internal/node/coldplug"
	"github.com/mkimage/mkimage/internal/node/firstboot"
	"github.com/mkimage/mkimage/internal/node/modload"
	"github.com/mkimage/mkimage/internal/node/netinstall"
	"github.com/mkimage/mkimage/internal/node/netroot"
	"github.com/mkimage/mkimage/internal/node/netup"
	"github.com/mkimage/mkimage/internal/node/pid1"
	"github.com/mkimage/mkimage/internal/node/policy"
	"github.com/mkimage/mkimage/internal/node/preconfigure"
	"github.com/mkimage/mkimage/internal/node/rootdev"
	"github.com/mkimage/mkimage/internal/node/versions"
	"github.com/mkimage/mkimage/internal/node/watchdog"
)

// Paths inside the initramfs that the builder writes (see package
// initramfs).
const (
	modulesList   = "/etc/nodeinit/modules"  // module files, load order
	coldplugIndex = "/etc/nodeinit/coldplug" // modules carried for coldplug (package modalias)
	newRoot       = "/newroot"
	topDir        = "/run/nodeinit/top" // a versioned root's top level, while mount-root runs
	rescueShell   = "/bbin/gosh"
)

// state is what the steps share.
type state struct {
	cfg     bootcfg.Config
	rootDev string       // e.g. /dev/vda2, or /dev/loop0 for a diskless root
	lease   *netup.Lease // set once the network is up (netboot)

	node      firstboot.Node // who first boot found this node to be
	remountRO bool           // the root was remounted read-write for first boot

	coldplug *coldplug.Loader // nil unless the coldplug step ran
	watchdog *watchdog.Dog    // nil unless nodeinit.watchdog armed one
}

// step is one named stage of the boot; each must be safe to repeat after
// a power cut.
type step struct {
	name string
	run  func(*state) error
}

var steps = []step{
	{"mount-early", func(*state) error { return pid1.MountEarly() }},
	{"config", func(st *state) error { return st.cfg.Load(bootcfg.DefaultsPath, "/proc/cmdline", say) }},
	{"modules", func(*state) error { return modload.List(modulesList, say) }},
	{"coldplug", func(st *state) error {
		st.coldplug = coldplug.Run(coldplugIndex, st.cfg.Coldplug, say)
		return nil
	}},
	{"watchdog", func(st *state) error {
		st.watchdog = watchdog.Arm(watchdog.Devices, st.cfg.Watchdog, say)
		return nil
	}},
	{"netinstall", func(st *state) error { return netinstall.Run(context.Background(), st.cfg, say) }},
	{"find-root", func(st *state) (err error) {
		if bootcfg.IsNetRoot(st.cfg.Root) {
			st.lease, err = netroot.FindRoot(st.cfg, say)
			return err
		}
		st.rootDev, err = rootdev.Find(st.cfg.Root, st.cfg.Timeout, st.coldplug.More, say)
		return err
	}},
	{"mount-root", func(st *state) (err error) {
		if bootcfg.IsNetRoot(st.cfg.Root) {
			st.rootDev, err = netroot.MountRoot(context.Background(), st.cfg, st.lease.Server, newRoot, say)
			return err
		}
		if st.cfg.Version != "" {
			return versions.Mount(st.rootDev, st.cfg.RootFSType, st.cfg.RootFlags, st.cfg.Version, topDir, newRoot, say)
		}
		return rootdev.Mount(st.rootDev, newRoot, st.cfg.RootFSType, st.cfg.RootFlags, say)
	}},
	{"first-boot", func(st *state) error {
		st.node = firstboot.Boot(context.Background(), firstboot.Env{
			Root: newRoot, Sys: "/sys", Dev: "/dev", Proc: "/proc", Run: "/run",
			RootPart: rootdev.Part(st.cfg.Root, st.rootDev), Log: say,
		}, plan.BakedPath, st.rootWritable)
		return nil
	}},
	{"policy", func(st *state) error {
		if st.node.Policy {
			policy.Boot(context.Background(), policy.Env{Root: newRoot, Proc: "/proc", Sys: "/sys", Node: st.node.Plan, Log: say})
		}
		// The root's init gets the root as the command line mounted it.
		rootdev.Restore(newRoot, st.cfg.RootFlags, st.remountRO, say)
		return nil
	}},
	{"hostname", func(st *state) error {
		pid1.SetHostname(st.node.Plan.Name, say)
		return nil
	}},
	{"switch-root", func(st *state) error {
		if st.cfg.Rescue {
			return fmt.Errorf("nodeinit.rescue on the command line: stopping before switch_root")
		}
		st.watchdog.HandOver("the root's init")
		return pid1.SwitchRoot(newRoot, st.rootDev, st.cfg.Init, say)
	}},
}

func main() {
	if os.Getpid() != 1 {
		// Run from a booted root: the node's update command.
		os.Exit(command(os.Args[1:], os.Stdout, os.Stderr))
	}
	say("starting (pid %d)", os.Getpid())
	st := &state{cfg: bootcfg.Default()}
	start := time.Now()
	for _, s := range steps {
		if err := s.run(st); err != nil {
			if st.cfg.Preconfigure {
				preconfigure.Failed(fmt.Errorf("step %s: %w", s.name, err), say)
			}
			// Unfed, it resets the board: a version that does not
			// come up uses up its tries.
			st.watchdog.HandOver("the rescue shell (echo V > /dev/watchdog0 to stop it)")
			pid1.Rescue(rescueShell, fmt.Sprintf("step %s failed: %v", s.name, err), say)
		}
		if s.name == "mount-root" && st.cfg.Preconfigure {
			preconfigure.Run(context.Background(), newRoot, st.rootWritable, say) // never returns
		}
	}
	// switch-root only returns on failure.
	pid1.Rescue(rescueShell, fmt.Sprintf("switch-root returned after %v", time.Since(start)), say)
}

// rootWritable makes the root writable for first boot or preconfigure,
// remembering to put it back for the root's init.
func (st *state) rootWritable() error {
	ro, err := rootdev.Writable(newRoot, st.cfg.RootFlags, say)
	st.remountRO = st.remountRO || ro
	return err
}

// say prints one console line, which starts with "nodeinit: ": the
// firstboot and policy packages start their lines with it themselves,
// the others leave it to say.
func say(format string, a ...any) {
	line := fmt.Sprintf(format, a...)
	if !strings.HasPrefix(line, "nodeinit: ") {
		line = "nodeinit: " + line
	}
	fmt.Fprintln(os.Stdout, line)
}
