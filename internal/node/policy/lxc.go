package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mkimage/mkimage/internal/atomicfile"
	"github.com/mkimage/mkimage/internal/cluster/plan"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const generated = plan.Generated

// LXC creates and addresses the bridge (IPv4, and IPv6 with address6),
// writes the root's default container network and pins each of this
// node's containers to its IP (and IPv6 address) and MAC, and enables or
// disables lxcfs in the root's init system.
func LXC(env Env) error {
	x := env.Node.LXC
	if x == nil {
		return nil
	}
	var errs []error
	if err := bridge(x.Bridge, x.Address, x.Address6); err != nil {
		errs = append(errs, fmt.Errorf("bridge %s: %w", x.Bridge, err))
	}
	if err := lxcDefault(env); err != nil {
		errs = append(errs, err)
	}
	for _, ct := range x.Containers {
		if err := pinContainer(env, ct); err != nil {
			errs = append(errs, err)
		}
	}
	if err := lxcfs(env, x.LXCFS); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// bridge makes bridge name and gives it each of cidrs (empty ones
// skipped). An IPv6 address goes on without duplicate address detection:
// the config made it unique, and the only other hosts on the bridge are
// the containers, so DAD could only let a container that answers for the
// bridge's address (one without a pinned ip6, which the antispoof table
// does not hold to its own) take it from the node.
func bridge(name string, cidrs ...string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return err
		}
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
			return err
		}
		if l, err = netlink.LinkByName(name); err != nil {
			return err
		}
	} else if l.Type() != "bridge" {
		return fmt.Errorf("%s exists and is a %s, not a bridge", name, l.Type())
	}
	for _, cidr := range cidrs {
		if cidr == "" {
			continue
		}
		a, err := netlink.ParseAddr(cidr)
		if err != nil {
			return err
		}
		if a.IP.To4() == nil {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrReplace(l, a); err != nil {
			return fmt.Errorf("address %s: %w", cidr, err)
		}
	}
	return netlink.LinkSetUp(l)
}

// netLines is the lxc.net.0 block for the default network.
func netLines(typ, br string) []string {
	if typ == "veth" {
		return []string{"lxc.net.0.type = veth", "lxc.net.0.link = " + br, "lxc.net.0.flags = up"}
	}
	return []string{"lxc.net.0.type = " + typ}
}

// rewrite replaces every line whose key starts with one of prefixes by
// lines, keeping the rest of the file (idmaps, apparmor, rootfs...).
func rewrite(path string, prefixes, lines []string, create bool) error {
	old, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && create {
		old, err = nil, nil
	}
	if err != nil {
		return err
	}
	var out bytes.Buffer
	for _, l := range strings.SplitAfter(string(old), "\n") {
		key := strings.TrimSpace(strings.SplitN(l, "=", 2)[0])
		drop := l == "" || l == generated
		for _, p := range prefixes {
			if strings.HasPrefix(key, p) {
				drop = true
			}
		}
		if !drop {
			out.WriteString(l)
			if !strings.HasSuffix(l, "\n") {
				out.WriteByte('\n')
			}
		}
	}
	out.WriteString(generated)
	for _, l := range lines {
		out.WriteString(l + "\n")
	}
	if bytes.Equal(out.Bytes(), old) {
		return nil
	}
	return atomicfile.WriteFile(path, out.Bytes(), 0o644)
}

func lxcDefault(env Env) error {
	x := env.Node.LXC
	return rewrite(filepath.Join(env.Root, "etc/lxc/default.conf"), []string{"lxc.net."}, netLines(x.Network, x.Bridge), true)
}

// pinContainer pins an existing container's network: its veth's name,
// MAC, IPv4 address and gateway and, with an ip6, its IPv6 address with
// the bridge's IPv6 address as gateway; a container that runs a daemon
// of the node's shares the node's network instead. A container not yet created is
// left alone (creating its config would make lxc-create refuse it); it is
// pinned at the first boot after it exists.
func pinContainer(env Env, ct plan.Container) error {
	x := env.Node.LXC
	name := ct.Name
	conf := filepath.Join(env.Root, "var/lib/lxc", name, "config")
	if _, err := os.Stat(conf); errors.Is(err, fs.ErrNotExist) {
		env.Log("nodeinit: lxc: container %s has no %s yet; its network is pinned once it exists", name, strings.TrimPrefix(conf, env.Root))
		return nil
	}
	var lines []string
	if len(ct.Runs) > 0 {
		// It runs the node's haproxy or i2pd, which serve on the node's
		// addresses: it shares the node's network namespace.
		lines = netLines("none", "")
	} else {
		// A known host-side name, for the antispoof rules to match on.
		lines = append(netLines("veth", x.Bridge), "lxc.net.0.veth.pair = "+VethName(name))
		if ct.MAC != "" {
			lines = append(lines, "lxc.net.0.hwaddr = "+ct.MAC)
		}
		lines = append(lines, "lxc.net.0.ipv4.address = "+ct.IP, "lxc.net.0.ipv4.gateway = "+plan.AddrOf(x.Address))
		if ct.IP6 != "" && x.Address6 != "" {
			lines = append(lines, "lxc.net.0.ipv6.address = "+ct.IP6, "lxc.net.0.ipv6.gateway = "+plan.AddrOf(x.Address6))
		}
	}
	prefixes := []string{"lxc.net.0."}
	// A container the build placed is in every node's image with
	// lxc.start.auto = 0: it starts on its own node only, this one.
	built := false
	if b, err := os.ReadFile(conf); err == nil && bytes.HasPrefix(b, []byte(plan.AutostartMarker+"\n")) {
		built = true
		prefixes = append(prefixes, "lxc.start.auto")
		lines = append(lines, "lxc.start.auto = 1")
	}
	if err := rewrite(conf, prefixes, lines, false); err != nil {
		return fmt.Errorf("container %s: %w", name, err)
	}
	if built {
		if err := containerResolvConf(env, name); err != nil {
			return fmt.Errorf("container %s: %w", name, err)
		}
	}
	return nil
}

// containerResolvConf gives a container the build placed the node's DNS
// servers in its /etc/resolv.conf: its address is pinned, so no DHCP
// tells it any. A file the container's root brings with content (not one
// nodeinit wrote), or a symlink (resolvconf, systemd-resolved), is its
// own and kept. The root and its etc must be directories, not symlinks:
// the root is the container's, and a path through a link of its could
// write into the node's.
func containerResolvConf(env Env, name string) error {
	conf := env.Node.ResolvConf()
	if conf == nil {
		return nil
	}
	rootfs := filepath.Join(env.Root, "var/lib/lxc", name, "rootfs")
	for _, d := range []string{rootfs, filepath.Join(rootfs, "etc")} {
		fi, err := os.Lstat(d)
		if errors.Is(err, fs.ErrNotExist) {
			if d == rootfs {
				return nil // not unpacked: nothing to write into
			}
			if err := os.Mkdir(d, 0o755); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory (%s): no resolv.conf written", strings.TrimPrefix(d, env.Root), fi.Mode().Type())
		}
	}
	p := filepath.Join(rootfs, "etc/resolv.conf")
	if fi, err := os.Lstat(p); err == nil {
		if !fi.Mode().IsRegular() {
			return nil
		}
		if old, err := os.ReadFile(p); err != nil || (len(bytes.TrimSpace(old)) > 0 && !bytes.HasPrefix(old, []byte(generated))) {
			return err
		}
	}
	return atomicfile.WriteFileIfChanged(p, conf, 0o644)
}

// lxcfs enables (or disables) lxcfs where the root has it: a systemd
// wants-link, or sysv rc links to /etc/init.d/lxcfs.
func lxcfs(env Env, on bool) error {
	root, err := os.OpenRoot(env.Root)
	if err != nil {
		return err
	}
	defer root.Close()
	if !exists(root, "usr/bin/lxcfs") {
		if on {
			env.Log("nodeinit: lxc: lxcfs not installed in the root, skipped")
		}
		return nil
	}
	found, err := enableService(root, "lxcfs", on)
	if err == nil && hasSystemd(root) {
		err = lxcfsFirst(root, on)
	}
	if err != nil {
		return fmt.Errorf("lxcfs: %w", err)
	}
	if found {
		return nil
	}
	if on {
		env.Log("nodeinit: lxc: root has lxcfs but neither systemd nor /etc/init.d/lxcfs; not enabled")
	}
	return nil
}

// lxcfsDropIns make systemd start containers only once lxcfs is mounted.
// lxcfs.service is Type=simple: "started" means the process runs, not
// that /var/lib/lxcfs is mounted, and LXC's mount hook silently skips
// lxcfs for a container started before the mount. So lxcfs.service waits
// for its mount (up to 10 s; if it never comes the unit fails and the
// containers still start, without lxcfs) and both LXC units are ordered
// after it.
var lxcfsDropIns = map[string]string{
	"etc/systemd/system/lxcfs.service.d/mkimage-mounted.conf": generated + `[Service]
ExecStartPost=/bin/sh -c 'for i in $(seq 100); do mountpoint -q /var/lib/lxcfs && exit 0; sleep 0.1; done; echo "lxcfs: /var/lib/lxcfs not mounted after 10 s" >&2; exit 1'
`,
	"etc/systemd/system/lxc.service.d/mkimage-lxcfs.conf":  generated + "[Unit]\nWants=lxcfs.service\nAfter=lxcfs.service\n",
	"etc/systemd/system/lxc@.service.d/mkimage-lxcfs.conf": generated + "[Unit]\nWants=lxcfs.service\nAfter=lxcfs.service\n",
}

// lxcfsFirst writes (on) or removes (off) lxcfsDropIns.
func lxcfsFirst(root *os.Root, on bool) error {
	var errs []error
	for name, content := range lxcfsDropIns {
		if !on {
			errs = append(errs, removeIfExists(root, name))
			continue
		}
		errs = append(errs, atomicfile.WriteFileIfChangedIn(root, name, []byte(content), 0o644))
	}
	return errors.Join(errs...)
}
