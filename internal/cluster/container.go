package cluster

import (
	"fmt"
	"strings"
)

// ContainerPos is "file:line" of the rootfs key of the i-th
// [[lxc.container]] (its table's line without one), for errors found
// after parsing, such as an image that cannot be pulled.
func (c *Config) ContainerPos(i int) string {
	line := c.loc.at("lxc.container", i, "rootfs")
	if line == 0 {
		line = c.loc.at("lxc.container", i, "")
	}
	return fmt.Sprintf("%s:%d", c.file, line)
}

// ContainerNotes says, for each container whose root the build makes,
// where it comes from: "NAME on node NODE: oci:REF" or "NAME on node
// NODE: debian:SUITE + PACKAGES, configured at its first start".
func (c *Config) ContainerNotes() []string {
	if c.LXC == nil {
		return nil
	}
	var out []string
	for _, ct := range c.LXC.Containers {
		s := fmt.Sprintf("%s on node %s: %s", ct.Name, ct.Node, ct.Rootfs)
		switch ct.Rootfs.Scheme {
		case "":
			continue
		case "debian":
			if len(ct.Packages) > 0 {
				s += " + " + strings.Join(ct.Packages, " ")
			}
			s += ", configured at its first start"
		}
		out = append(out, s)
	}
	return out
}
