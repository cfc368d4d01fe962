package debroot

import (
	"fmt"
	"path"

	"github.com/mkimage/mkimage/internal/fstree"
)

// dhcpNetwork configures every wired interface by DHCP with
// systemd-networkd (nodeinit may replace it with the inventory's static
// address).
const dhcpNetwork = `# Written by mkimage: DHCP on wired interfaces.
[Match]
Name=en* eth*

[Network]
DHCP=yes
`

// configure writes what debootstrap and the installer would: hostname,
// hosts, apt sources, networking (systemd-networkd enabled with DHCP; not
// in a container, see Options.Container), and checks that root has no
// usable password. Files already in the tree (from packages) are kept.
func configure(t *fstree.Tree, opt Options) error {
	hostname := "debian"
	if opt.Container != "" {
		hostname = opt.Container
	}
	files := []struct {
		path, data string
	}{
		{"etc/hostname", hostname + "\n"},
		{"etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"},
		{"etc/apt/sources.list", fmt.Sprintf("deb %[1]s %[2]s main\ndeb %[1]s %[2]s-updates main\ndeb %[3]s %[2]s-security main\n",
			opt.Mirror, opt.Suite, "http://deb.debian.org/debian-security")},
	}
	if opt.Container == "" {
		files = append(files, []struct{ path, data string }{
			{"etc/systemd/network/80-mkimage-dhcp.network", dhcpNetwork},
			// lxcfs opens /dev/fuse before anything loads the module.
			{"etc/modules-load.d/mkimage-lxcfs.conf", "# Written by mkimage: lxcfs needs FUSE.\nfuse\n"},
		}...)
	}
	for _, f := range files {
		if _, ok := t.Lookup(f.path); ok {
			continue
		}
		if _, err := t.MkdirAll(path.Dir(f.path), opt.Epoch); err != nil {
			return err
		}
		if err := t.Put(f.path, fstree.NewFile(0o644, []byte(f.data), opt.Epoch)); err != nil {
			return err
		}
	}
	// systemctl enable systemd-networkd, done as symlinks.
	links := map[string]string{
		"etc/systemd/system/multi-user.target.wants/systemd-networkd.service": "/lib/systemd/system/systemd-networkd.service",
		"etc/systemd/system/sockets.target.wants/systemd-networkd.socket":     "/lib/systemd/system/systemd-networkd.socket",
		"etc/systemd/system/dbus-org.freedesktop.network1.service":            "/lib/systemd/system/systemd-networkd.service",
	}
	if _, ok := t.Lookup("usr/lib/systemd/system/systemd-networkd.service"); ok && opt.Container == "" {
		for l, target := range links {
			if _, err := t.MkdirAll(path.Dir(l), opt.Epoch); err != nil {
				return err
			}
			if err := t.Put(l, fstree.NewSymlink(target, opt.Epoch)); err != nil {
				return err
			}
		}
	}
	return nil
}
