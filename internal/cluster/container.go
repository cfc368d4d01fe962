package cluster

import "fmt"

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
