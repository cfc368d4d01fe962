package debroot

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
