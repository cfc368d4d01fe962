// Package sendstreamtest hands btrfs send streams to the real btrfs
// tools in tests: `btrfs receive --dump`, and `btrfs receive` into a
// scratch filesystem read back and compared with the tree the stream was
// written from. It does not import sendstream, so sendstream's own tests
// can use it as well as those of the packages writing streams.
package sendstreamtest

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/build/rootfs"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/fstree/fstreetest"
	"github.com/mkimage/mkimage/internal/testenv"
)

// WriteStream writes stream to a file in a test directory and returns its
// path.
func WriteStream(t testing.TB, stream []byte) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "stream")
	if err := os.WriteFile(f, stream, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// dumpCommands are the command names `btrfs receive --dump` prints.
var dumpCommands = map[string]bool{
	"subvol": true, "snapshot": true, "mkfile": true, "mkdir": true, "mknod": true, "mkfifo": true,
	"mksock": true, "symlink": true, "rename": true, "link": true, "unlink": true, "rmdir": true,
	"set_xattr": true, "remove_xattr": true, "write": true, "clone": true, "truncate": true,
	"chmod": true, "chown": true, "utimes": true, "update_extent": true,
	"encoded_write": true, "fallocate": true, "fileattr": true, "enable_verity": true,
}

// Dump has btrfs-progs parse stream (`btrfs receive --dump`, which
// verifies every crc) and returns the commands it lists, in order.
func Dump(t testing.TB, stream []byte) []string {
	t.Helper()
	testenv.NeedTools(t, "btrfs")
	out := testenv.Run(t, "btrfs", "receive", "--dump", "-f", WriteStream(t, stream))
	// A command's line starts with its name and a path under "./";
	// other lines are the rest of printed xattr values.
	var cmds []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 1 && dumpCommands[f[0]] && strings.HasPrefix(f[1], "./") {
			cmds = append(cmds, f[0])
		}
	}
	return cmds
}

// FormatUUID writes u as btrfs-progs prints it.
func FormatUUID(u [16]byte) string {
	s := hex.EncodeToString(u[:])
	return s[:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:]
}

// Receive applies stream with btrfs receive under mnt and checks the new
// subvolume name: read-only, received UUID uuid, and the same tree as
// want (ctime aside: receive cannot set it).
func Receive(t testing.TB, mnt string, stream []byte, name string, uuid [16]byte, want *fstree.Tree) {
	t.Helper()
	testenv.Run(t, "btrfs", "receive", "-f", WriteStream(t, stream), mnt)
	sub := filepath.Join(mnt, name)
	if out := testenv.Run(t, "btrfs", "property", "get", "-ts", sub, "ro"); strings.TrimSpace(out) != "ro=true" {
		t.Errorf("%s: %s", sub, out)
	}
	if out := testenv.Run(t, "btrfs", "subvolume", "show", sub); !strings.Contains(out, "Received UUID: \t\t"+FormatUUID(uuid)) {
		t.Errorf("%s: received UUID is not %s:\n%s", sub, FormatUUID(uuid), out)
	}
	got, err := rootfs.HostDir(sub, rootfs.HostOptions{})
	if err != nil {
		t.Fatalf("reading back %s: %v", sub, err)
	}
	SameTree(t, fstreetest.EpochTimes(want), got, fstree.DiffOptions{IgnoreCtime: true}, name+": what btrfs receive made")
}

// SameTree fails t with the differences between want and got (what
// names got), at most 20 of them.
func SameTree(t testing.TB, want, got *fstree.Tree, opt fstree.DiffOptions, what string) {
	t.Helper()
	diffs, err := fstree.Diff(want, got, opt)
	if err != nil {
		diffs = append(diffs, err.Error())
	}
	for i, d := range diffs {
		if i < 20 {
			t.Errorf("%s", d)
		}
	}
	if len(diffs) > 0 {
		t.Errorf("%d differences between the tree (a) and %s (b)", len(diffs), what)
	}
}
