package cachedir

import (
	"path"
	"strings"
)

// Kind is one sort of thing in the cache, as data: where its entries are,
// what they hold, and the lock its writer holds while it changes one.
type Kind struct {
	// Name is how the kind is shown: its directory under Root.
	Name string `json:"kind"`
	// Holds says in one line what the entries are.
	Holds string `json:"holds"`
	// Globs, relative to Root and slash-separated (wildcards in the last
	// element only), match the kind's entries: each match is one entry,
	// the unit Prune removes whole.
	Globs []string `json:"-"`
	// Lock is the flock(2) file, relative to Root, that the kind's writer
	// holds while it builds or changes an entry; "{entry}" stands for the
	// entry's path. Empty when the writer takes none: Prune then relies on
	// MinAge (see Prune).
	Lock string `json:"-"`
}

// Kinds is everything mkimage and its tests keep under Root. A writer of
// a new kind adds a row here, so that List shows it and Prune can free it.
var Kinds = []Kind{
	{Name: "apt/debs", Globs: []string{"apt/debs/*"},
		Holds: "Debian packages for roots, kernels and bootloaders, checked by sha256; an entry is one .deb"},
	{Name: "apt/lists", Globs: []string{"apt/lists", "apt/cache"}, Lock: "apt/.lock",
		Holds: "apt's arm64 package lists and its working directory, refreshed when a day old"},
	{Name: "initramfs", Globs: []string{"initramfs/*"},
		Holds: "built initramfs archives (initramfs-KEY.cpio.xz) and u-root busybox builds (busybox-KEY.cpio)"},
	{Name: "kernels", Globs: []string{"kernels/*"},
		Holds: "kernel packages unpacked once (Image, dtbs/, modules and depmod's indexes), by the .deb's sha256"},
	{Name: "kernel-config", Globs: []string{"kernel-config/*"},
		Holds: "each kernel package's config, copied to /boot/config-VERSION of Debian roots, by the .deb's sha256"},
	{Name: "kernel/src", Globs: []string{"kernel/src/*"},
		Holds: "kernel source tarballs unpacked once, by the tarball's sha256 (about 1.5 GB each)"},
	{Name: "kernel/build", Globs: []string{"kernel/build/*"}, Lock: "{entry}.lock",
		Holds: "out-of-tree kernel build directories, reused by the next build of the same source and toolchain"},
	{Name: "kernel/out", Globs: []string{"kernel/out/*"},
		Holds: "built kernels (Image, modules, DTBs), by source, config and toolchain"},
	{Name: "kernel/kconfig", Globs: []string{"kernel/kconfig/*", "kernel/.kconfig-*"},
		Holds: "resolved kernel .configs, by source, fragment and toolchain"},
	{Name: "oci/blobs", Globs: []string{"oci/blobs/*"},
		Holds: "container image blobs (configs and layers) pulled for [[lxc.container]] rootfs = \"oci:...\", by digest; an entry is one blob"},
	{Name: "test-debs", Globs: []string{"test-debs/*"},
		Holds: "tests only: Debian's kernel and busybox packages unpacked with dpkg-deb"},
	{Name: "test-debian-root", Globs: []string{"test-debian-root", "test-debian-root.tmp"},
		Holds: "tests only: a debootstrap --foreign arm64 root for the btrfs mount tests (one entry)"},
}

// lockFor returns the lock file of the entry at rel (relative to Root,
// slash-separated), or "" when the kind has no lock.
func (k Kind) lockFor(rel string) string {
	return strings.ReplaceAll(k.Lock, "{entry}", rel)
}

// isLock reports whether rel is one of the kind's lock files: those are
// not entries, and stay when their entry goes (removing a lock file
// another process has open would let two writers each hold "the" lock).
func (k Kind) isLock(rel string) bool {
	if k.Lock == "" {
		return false
	}
	for _, g := range k.Globs {
		if ok, _ := path.Match(k.lockFor(g), rel); ok {
			return true
		}
	}
	return false
}
