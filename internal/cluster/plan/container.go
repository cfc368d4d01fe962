package plan

// AutostartMarker is the first line of an LXC config the builder
// generates for a container of the cluster config (rootfs = "oci:...").
// The image is the same for every node, so it carries every node's
// containers with lxc.start.auto = 0; nodeinit, which knows which node
// it is on, sets lxc.start.auto = 1 in the configs of this node's
// containers that have this line, and leaves hand-made containers' alone.
const AutostartMarker = "# mkimage: lxc.start.auto is set by nodeinit on the container's own node"
