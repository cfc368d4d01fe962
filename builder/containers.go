package builder

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/mkimage/mkimage/internal/build/ocirootfs"
	"github.com/mkimage/mkimage/internal/build/registryauth"
	"github.com/mkimage/mkimage/internal/cluster"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/update/registry"
)

// addContainers places the cluster config's containers that name an
// image (rootfs = "oci:...") under var/lib/lxc of the root. The image is
// the same for every node, so it carries every node's containers; each
// config has lxc.start.auto = 0 and nodeinit sets it to 1 on the
// container's own node (policy.pinContainer, plan.AutostartMarker),
// where it also writes the network lines. Blobs are cached by digest.
func (in *inputs) addContainers(ctx context.Context, o *Options, c *cluster.Config, root *fstree.Tree) error {
	if c == nil || c.LXC == nil {
		return nil
	}
	var p *ocirootfs.Puller
	for i, ct := range c.LXC.Containers {
		if ct.Rootfs.Scheme != "oci" {
			continue // made by hand on the node (debian: is refused by validation)
		}
		src := ct.Rootfs.String()
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
		fail := func(err error) error {
			return fmt.Errorf("%s: container %s: rootfs %s: %w", c.ContainerPos(i), ct.Name, src, err)
		}
		img, err := p.Pull(ctx, ct.Rootfs.Ref)
		if err != nil {
			return fail(err)
		}
		tree, err := img.Tree(0)
		if err != nil {
			return fail(err)
		}
		conf, err := ocirootfs.LXCConfig(string(ct.Name), src, img, tree)
		if err != nil {
			return fail(err)
		}
		if err := ocirootfs.Place(root, string(ct.Name), tree, conf, img.Created); err != nil {
			return fail(err)
		}
		st := tree.Stats()
		in.add("container", src, registry.SumOf(img.Digest), fmt.Sprintf("%s on node %s, %d entries", ct.Name, ct.Node, st.Entries))
		logf(o, "container %s (node %s): %s, image %s, %.1f MB", ct.Name, ct.Node, src, img.Digest, float64(st.DataBytes)/1e6)
	}
	return nil
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
		if ct.Rootfs.Scheme == "oci" {
			return fmt.Errorf("%s: container %s: rootfs %s: not supported yet in an updatable image (--update-key): its /var/lib/lxc is the node's own state subvolume, which neither the image nor an update fills", c.ContainerPos(i), ct.Name, ct.Rootfs)
		}
	}
	return nil
}
