package plan

import (
	"fmt"
	"strings"
)

// AutostartMarker is the first line of an LXC config the builder
// generates for a container of the cluster config (rootfs = "oci:...").
// The image is the same for every node, so it carries every node's
// containers with lxc.start.auto = 0; nodeinit, which knows which node
// it is on, sets lxc.start.auto = 1 in the configs of this node's
// containers that have this line, and leaves hand-made containers' alone.
const AutostartMarker = "# mkimage: lxc.start.auto is set by nodeinit on the container's own node"

// Generated is the first line of every file nodeinit writes from the
// plan: the sign that a later boot may rewrite it.
const Generated = "# written by nodeinit from the cluster config\n"

// ResolvConf is an /etc/resolv.conf for the plan's DNS servers and
// domain, nil without DNS servers.
func (p *Plan) ResolvConf() []byte {
	if len(p.DNS) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString(Generated)
	if p.Domain != "" {
		fmt.Fprintf(&b, "search %s\n", p.Domain)
	}
	for _, d := range p.DNS {
		fmt.Fprintf(&b, "nameserver %s\n", d)
	}
	return []byte(b.String())
}
