package netfetch

// KeysPath is where the builder bakes the keys of a signed netboot tree
// into the initramfs (mkimage netboot --update-key). When it exists, the
// node takes only images its signed images.json lists.
const KeysPath = "/etc/nodeinit/netboot-keys"
