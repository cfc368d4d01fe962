package builder

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/build/debroot"
	"github.com/mkimage/mkimage/internal/build/ocirootfs"
	"github.com/mkimage/mkimage/internal/build/registryauth"
	"github.com/mkimage/mkimage/internal/cluster"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/update/registry"
)

// addContainers places the cluster config's containers that bring their
// root (rootfs = "oci:..." or "debian:SUITE") under var/lib/lxc of the
// root. The image is the same for every node, so it carries every node's
// containers; each config has lxc.start.auto = 0 and nodeinit sets it to
// 1 on the container's own node (policy.pinContainer,
// plan.AutostartMarker), where it also writes the network lines. Blobs
// and packages are cached by digest.
func (in *inputs) addContainers(ctx context.Context, o *Options, c *cluster.Config, root *fstree.Tree) error {
	if c == nil || c.LXC == nil {
		return nil
	}
	var p *ocirootfs.Puller
	indexes := map[string]*debroot.Index{} // by suite, loaded once
	for i, ct := range c.LXC.Containers {
		src := ct.Rootfs.String()
		fail := func(err error) error {
			return fmt.Errorf("%s: container %s: rootfs %s: %w", c.ContainerPos(i), ct.Name, src, err)
		}
		var tree *fstree.Tree
		var conf []byte
		var t time.Time
		var err error
		switch ct.Rootfs.Scheme {
		case "oci":
			if p == nil {
				creds, err := registryauth.Docker(o.DockerConfig)
				if err != nil {
					return fmt.Errorf("%s: container %s: %w", c.ContainerPos(i), ct.Name, err)
				}
				p = &ocirootfs.Puller{
					Client: registry.New(creds, nil, o.PlainHTTP),
					Cache:  filepath.Join(o.CacheDir, ocirootfs.CacheKind),
					Log:    func(f string, a ...any) { logf(o, f, a...) },
				}
			}
			tree, conf, t, err = in.ociContainer(ctx, o, p, ct)
		case "debian":
			tree, conf, err = in.debianContainer(ctx, o, indexes, ct)
			t = o.Epoch
		default:
			continue // made by hand on the node
		}
		if err != nil {
			return fail(err)
		}
		if err := ocirootfs.Place(root, string(ct.Name), tree, conf, t); err != nil {
			return fail(err)
		}
	}
	return nil
}

// ociContainer pulls a container's image and returns its unpacked root,
// its LXC config and the image's creation time (for the directories
// Place makes).
func (in *inputs) ociContainer(ctx context.Context, o *Options, p *ocirootfs.Puller, ct cluster.Container) (*fstree.Tree, []byte, time.Time, error) {
	src := ct.Rootfs.String()
	img, err := p.Pull(ctx, ct.Rootfs.Ref)
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	tree, err := img.Tree(0)
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	conf, err := ocirootfs.LXCConfig(string(ct.Name), src, img, tree)
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	st := tree.Stats()
	in.add("container", src, registry.SumOf(img.Digest), fmt.Sprintf("%s on node %s, %d entries", ct.Name, ct.Node, st.Entries))
	logf(o, "container %s (node %s): %s, image %s, %.1f MB", ct.Name, ct.Node, src, img.Digest, float64(st.DataBytes)/1e6)
	return tree, conf, img.Created, nil
}

// debianContainer builds a container's root from Debian packages as
// debianRoot builds a node's, with the container's set (containerSet:
// Essential, required, its packages and its runs daemons', no kernel,
// bootloader or LXC): resolved from the apt cache's lists
// (indexes holds them by suite across containers), fetched and checked,
// unpacked without running anything, every package "install ok
// unpacked". Nothing can configure them at build time (that would run
// arm64 maintainer scripts), and a container has no nodeinit: its
// lxc.hook.start runs debroot's first-boot hook inside the container
// just before its init, which configures the packages at the first start
// and exits at once at later ones; should it fail, lxc-start fails rather
// than boot a half-configured root.
func (in *inputs) debianContainer(ctx context.Context, o *Options, indexes map[string]*debroot.Index, ct cluster.Container) (*fstree.Tree, []byte, error) {
	suite := ct.Rootfs.Suite
	c := aptCache(o)
	ix := indexes[suite]
	if ix == nil {
		var err error
		if ix, err = debianIndex(ctx, c, suite); err != nil {
			return nil, nil, err
		}
		indexes[suite] = ix
	}
	pkgs, err := containerSet(ix, c.Arch, ct)
	if err != nil {
		return nil, nil, err
	}
	debs, err := FetchDebs(ctx, c, pkgs)
	if err != nil {
		return nil, nil, err
	}
	tree, err := debroot.Build(debs, debroot.Options{Arch: c.Arch, Suite: suite, Epoch: o.Epoch, Container: string(ct.Name)})
	if err != nil {
		return nil, nil, err
	}
	if err := checkInit(tree); err != nil {
		return nil, nil, err
	}
	src := ct.Rootfs.String()
	conf, err := ocirootfs.ContainerConfig(string(ct.Name), fmt.Sprintf("%s (%d packages)", src, len(debs)), []ocirootfs.Line{
		{Key: "lxc.init.cmd", Value: "/sbin/init"},
		{Key: "lxc.hook.start", Value: "/" + debroot.HookPath},
	})
	if err != nil {
		return nil, nil, err
	}
	for _, d := range debs {
		in.add("package", d.Path, d.Pkg.SHA256, d.Pkg.Name+" "+d.Pkg.Version+" (container "+string(ct.Name)+")")
	}
	runs := ""
	if len(ct.Runs) > 0 {
		runs = ", runs " + strings.Join(ct.Runs, ", ") + " for its node"
	}
	st := tree.Stats()
	logf(o, "container %s (node %s): %s, %d packages, %.1f MB%s", ct.Name, ct.Node, src, len(debs), float64(st.DataBytes)/1e6, runs)
	return tree, conf, nil
}

// containerSet resolves the packages of a container's Debian root:
// Debian's required set, its packages and those of the daemons it runs
// for its node (cluster.Container.DebianPackages).
func containerSet(ix *debroot.Index, arch string, ct cluster.Container) ([]*debroot.Pkg, error) {
	return debroot.ResolveContainer(ix, arch, ct.DebianPackages()...)
}

// checkInit makes sure the root has the /sbin/init LXC will run: an
// executable file at the end of its symlinks.
func checkInit(tree *fstree.Tree) error {
	p, err := tree.Resolve("sbin/init")
	if err == nil {
		if n, ok := tree.Lookup(p); ok && n.Type() == fstree.ModeRegular && n.Mode&0o111 != 0 {
			return nil
		}
	}
	return fmt.Errorf("the packages give the root no executable /sbin/init, which LXC runs as its init (leave the init to the build, or add systemd-sysv or sysvinit-core to packages)")
}

// checkContainers refuses what addContainers cannot do, before anything
// is downloaded: a version's var/lib/lxc is hidden under the node's "lxc"
// state subvolume (versions.State), which starts empty and no update
// reaches, so a container placed in an updatable image would never run.
func checkContainers(o *Options, c *cluster.Config) error {
	if c.LXC == nil || !updatable(o) {
		return nil
	}
	for i, ct := range c.LXC.Containers {
		if ct.Rootfs.Scheme != "" {
			return fmt.Errorf("%s: container %s: rootfs %s: not supported yet in an updatable image (--update-key): its /var/lib/lxc is the node's own state subvolume, which neither the image nor an update fills", c.ContainerPos(i), ct.Name, ct.Rootfs)
		}
	}
	return nil
}
