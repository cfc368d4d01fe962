// Package updater is the node's update command, `nodeinit update ...`,
// run from a booted versioned root (by hand, by the root's timer, or by
// its boot hooks): it finds the card the root runs from, mounts its
// btrfs top level and its FAT boot partition, and applies bundles,
// checks and commits the version being tried, records failed versions
// and prunes old ones (packages apply and bootstate do the work).
//
// The builder puts what it needs into every versioned root: the
// nodeinit binary (the initramfs's busybox, linked as /usr/sbin/nodeinit),
// the keys it accepts bundles from (KeysFile), the board name
// (BoardFile), and the hooks that run the check at every boot.
package updater

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/bootstate"
	"github.com/mkimage/mkimage/internal/update"
)

// Files of a versioned root the builder writes, relative to the root.
const (
	// KeysFile holds the public keys bundles must be signed by.
	KeysFile = "etc/mkimage/update-keys"
	// BoardFile names the board the root was built for; a bundle for
	// another is refused.
	BoardFile = "etc/mkimage/board"
	// URLFile, if present (an overlay puts it there), is the bundle URL
	// `nodeinit update apply` uses when given none, as the root's update
	// timer runs it.
	URLFile = "etc/mkimage/update-url"
	// StatusURLFile, if present (an overlay puts it there), names the
	// build host (mkimage serve --status-dir) the node reports its
	// status to after every check and apply.
	StatusURLFile = "etc/mkimage/status-url"
	// RegistryAuthFile, if present (an overlay puts it there, mode
	// 0600), is the login for an oci:// bundle URL's registry, one line
	// user:secret; without it the registry is read anonymously.
	RegistryAuthFile = "etc/mkimage/registry-auth"
	// BinaryPath is the nodeinit binary in the root.
	BinaryPath = "usr/sbin/nodeinit"
)

// HookDirs hold the health checks a tried version must pass before it
// is committed, relative to the root: the builder's in the second, the
// user's (an overlay) in the first; a name in the first replaces (or,
// not executable, disables) the same name in the second (package hookdir).
var HookDirs = []string{"etc/mkimage/health.d", "usr/lib/mkimage/health.d"}

// mountBase is where the command mounts the card's top level and boot
// partition while it works.
const mountBase = "/run/nodeinit/update"

// Card is the card a versioned root runs from, mounted for the command.
type Card struct {
	Root    string // the running root, "/" on a node
	Top     string // the btrfs top level (roots/, live/, state/)
	Boot    string // the FAT boot partition
	Running string // the version booted (mkimage.version= on the command line)
	Board   string
	Keys    []update.PublicKey
	Log     func(format string, a ...any)
	// Node and BootID, if set, stand for the kernel's hostname and boot
	// id in reports and lease requests (a test's simulated nodes).
	Node, BootID string

	lock    *os.File
	cleanup []func()
}

// Open finds and mounts the card the root at root runs from. Only one
// command works on a card at a time: Open waits for another to finish.
func Open(root string, logf func(format string, a ...any)) (c *Card, err error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	c = &Card{Root: root, Log: logf}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return nil, err
	}
	id, ok := bootstate.CmdlineVersion(string(cmdline))
	if !ok {
		return nil, fmt.Errorf("no %s= on the kernel command line: this node did not boot a versioned root (build the image with --update-key)", bootstate.CmdlineKey)
	}
	c.Running = id
	board, err := os.ReadFile(filepath.Join(root, BoardFile))
	if err != nil {
		return nil, fmt.Errorf("the root does not name its board: %w", err)
	}
	c.Board = strings.TrimSpace(string(board))
	keys, err := os.ReadFile(filepath.Join(root, KeysFile))
	if err != nil {
		return nil, fmt.Errorf("the root has no update keys: %w", err)
	}
	if c.Keys, err = update.ParsePublicKeys(keys); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(root, KeysFile), err)
	}

	if err := os.MkdirAll(mountBase, 0o700); err != nil {
		return nil, err
	}
	c.lock, err = os.OpenFile(filepath.Join(mountBase, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(c.lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		logf("waiting for another nodeinit update command to finish")
		if err := unix.Flock(int(c.lock.Fd()), unix.LOCK_EX); err != nil {
			return nil, fmt.Errorf("locking %s: %w", c.lock.Name(), err)
		}
	}

	rootDev, err := mountSource(root)
	if err != nil {
		return nil, err
	}
	bootDev, err := firstPartition(rootDev)
	if err != nil {
		return nil, err
	}
	c.Top = filepath.Join(mountBase, "top")
	if err := c.mount(rootDev, c.Top, "btrfs", "subvolid=5"); err != nil {
		return nil, err
	}
	c.Boot = filepath.Join(mountBase, "boot")
	if err := c.mount(bootDev, c.Boot, "vfat", ""); err != nil {
		return nil, err
	}
	return c, nil
}

// mount mounts dev on dir, first taking away what a killed command may
// have left there.
func (c *Card) mount(dev, dir, fstype, data string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for unix.Unmount(dir, 0) == nil {
	}
	if err := unix.Mount(dev, dir, fstype, unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, data); err != nil {
		return fmt.Errorf("mount %s (%s) on %s: %w", dev, fstype, dir, err)
	}
	c.cleanup = append(c.cleanup, func() {
		if err := unix.Unmount(dir, 0); err != nil {
			c.Log("unmount %s: %v", dir, err)
		}
	})
	return nil
}

// Close syncs and unmounts what Open mounted and lets the next command
// in.
func (c *Card) Close() {
	unix.Sync()
	for i := len(c.cleanup) - 1; i >= 0; i-- {
		c.cleanup[i]()
	}
	c.cleanup = nil
	if c.lock != nil {
		c.lock.Close()
		c.lock = nil
	}
}

// mountSource returns the block device mounted at dir, from the
// kernel's mount table.
func mountSource(dir string) (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	dev, err := parseMountinfo(f, dir)
	if err != nil {
		return "", err
	}
	return dev, nil
}

// parseMountinfo finds the source device of the last mount on dir in a
// mountinfo table (the one that is visible).
func parseMountinfo(r io.Reader, dir string) (string, error) {
	sc := bufio.NewScanner(r)
	var dev string
	for sc.Scan() {
		// 22 1 254:2 /live/ID / rw,relatime shared:1 - btrfs /dev/vda2 rw,...
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 2 || f[4] != dir {
			continue
		}
		dev = g[1]
		if g[0] != "btrfs" {
			dev = ""
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	if dev == "" || !strings.HasPrefix(dev, "/dev/") {
		return "", fmt.Errorf("%s is not mounted from a btrfs block device", dir)
	}
	return dev, nil
}

// firstPartition returns the first partition (the FAT boot partition)
// of the disk that holds partition dev, from sysfs.
func firstPartition(dev string) (string, error) {
	name := filepath.Base(dev)
	sys, err := filepath.EvalSymlinks(filepath.Join("/sys/class/block", name))
	if err != nil {
		return "", fmt.Errorf("%s: %w", dev, err)
	}
	disk := filepath.Dir(sys)
	ents, err := os.ReadDir(disk)
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(disk, e.Name(), "partition"))
		if err == nil && string(bytes.TrimSpace(b)) == "1" {
			return "/dev/" + e.Name(), nil
		}
	}
	return "", errors.New("the disk of " + dev + " has no partition 1 (the boot partition)")
}
