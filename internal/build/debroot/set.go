package debroot

import "slices"

// NodePackages are what a cluster node runs beyond Debian's required
// set: containers, btrfs tools, the firewall, ssh, rsync, the load
// balancer, and systemd as init, with udev (device nodes, coldplug of
// the board's modules), kmod (modprobe: the kernel's own module
// requests, such as fuse for lxcfs, lsmod for lxc-checkconfig) and
// apparmor (apparmor_parser: Debian's LXC refuses to start a container
// without loading its generated profile). usr-is-merged states that the
// root is merged-/usr (the symlinks are made at unpack, as debootstrap
// does), so usrmerge's conversion is not pulled in.
var NodePackages = []string{
	"systemd", "systemd-sysv", "udev", "kmod", "usr-is-merged",
	"lxc", "lxcfs", "btrfs-progs", "nftables", "openssh-server", "rsync",
	"iproute2", "ca-certificates", "haproxy", "apparmor",
}

// BaseNames are the packages every Debian root has: Essential: yes and
// Priority: required, for arch (or all).
func BaseNames(ix *Index, arch string) []string {
	return ix.Names(func(p *Pkg) bool {
		return (p.Essential || p.Priority == "required") && (p.Arch == arch || p.Arch == "all")
	})
}

// ContainerPackages are what the root of an LXC container built from
// packages has beyond Debian's required set and the container's own
// packages: usr-is-merged, as for a node (the root is merged-/usr at
// unpack; usrmerge would pull in perl to convert nothing). A container
// needs no kernel, bootloader, LXC or firewall: the node has them.
var ContainerPackages = []string{"usr-is-merged"}

// ContainerInit is added to a container's packages when none of them
// brings an init: LXC runs /sbin/init (lxc.init.cmd), and Debian's
// required set has none (init and systemd-sysv are Priority: important).
// systemd-sysv is what ships /sbin/init on a Debian system, and systemd
// knows it runs in a container (container=lxc).
const ContainerInit = "systemd-sysv"

// initProviders are the packages that ship /sbin/init in Debian.
var initProviders = []string{"systemd-sysv", "sysvinit-core", "runit-init"}

// ResolveContainer resolves the root of a container (see Resolve): the
// Essential and required packages, ContainerPackages and extra, with
// ContainerInit when nothing in the set ships /sbin/init.
func ResolveContainer(ix *Index, arch string, extra ...string) ([]*Pkg, error) {
	names := append(append(BaseNames(ix, arch), ContainerPackages...), extra...)
	pkgs, err := Resolve(ix, arch, names...)
	if err != nil {
		return nil, err
	}
	for _, p := range pkgs {
		if slices.Contains(initProviders, p.Name) {
			return pkgs, nil
		}
	}
	return Resolve(ix, arch, append(names, ContainerInit)...)
}
