package builder

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/bootstate"
	"github.com/mkimage/mkimage/internal/build/btrfs"
	"github.com/mkimage/mkimage/internal/build/bundle"
	"github.com/mkimage/mkimage/internal/build/uboot"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/node/versions"
	"github.com/mkimage/mkimage/internal/update"
)

// An updatable image (Options.UpdateKeys) holds its root as a version:
// the read-only subvolume roots/<id> on btrfs, written as if received
// from the version's update bundle so later bundles apply incrementally
// to it; the version's kernel, initramfs, device tree and command line
// under v/<id>/ on FAT; U-Boot's counting boot script and the boot state
// (good = try = id) beside them. nodeinit makes the writable live root
// and the state subvolumes at first boot (package versions). The same
// inputs give the same id here and in `mkimage update`.
const (
	// panicReboot makes a panicking kernel reboot, so a version that
	// cannot boot uses up its tries instead of hanging (Debian's kernel
	// has CONFIG_PANIC_TIMEOUT=0).
	panicReboot = "panic=10"
)

func updatable(o *Options) bool { return o.UpdateKeys != "" }

// systemdWatchdog is where a Debian root's systemd learns to feed the
// watchdog nodeinit hands on.
const systemdWatchdog = "etc/systemd/system.conf.d/50-mkimage-watchdog.conf"

// watchdogTakeover says whether the root's init will feed the hardware
// watchdog nodeinit hands on (so the command line may ask nodeinit to
// arm it), and makes a Debian root's systemd do so. Only the roots the
// build makes qualify: a root given as a directory or tarball has an
// init that may not feed it, and would be reset every few seconds.
func (in *inputs) watchdogTakeover(o *Options) (bool, error) {
	if !updatable(o) || o.Watchdog == 0 {
		return false, nil
	}
	switch {
	case o.Rootfs == "minimal":
		return true, nil // its rcS starts busybox's watchdog (minimal.go)
	case isDebianRoot(o.Rootfs):
		conf := fmt.Sprintf("# mkimage: nodeinit hands the hardware watchdog on armed (nodeinit.watchdog=%d).\n[Manager]\nRuntimeWatchdogSec=%d\n", o.Watchdog, o.Watchdog)
		return true, putFile(in.root, systemdWatchdog, []byte(conf), o.Epoch)
	}
	logf(o, "watchdog: not armed: the init of --rootfs %s may not feed it", o.Rootfs)
	return false, nil
}

// loadUpdateKeys reads and checks --update-key before anything is
// fetched.
func (in *inputs) loadUpdateKeys(o *Options) error {
	if o.ChannelURL != "" {
		if !updatable(o) {
			return fmt.Errorf("--channel-url needs --update-key (only an updatable image follows a channel)")
		}
		if u, err := url.Parse(o.ChannelURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.ContainsAny(o.ChannelURL, " \n") {
			return fmt.Errorf("--channel-url %q: want http(s)://HOST[:PORT]/PATH of the channel file mkimage fleet rollout writes", o.ChannelURL)
		}
	}
	if !updatable(o) {
		return nil
	}
	b, _, err := readKeys(o.UpdateKeys)
	if err != nil {
		return err
	}
	if o.Backend != "native" {
		return fmt.Errorf("--update-key needs the native root backend (it writes the versioned layout), not %q", o.Backend)
	}
	if o.Preconfigure {
		return fmt.Errorf("--update-key and --preconfigure cannot go together yet: preconfigure boots the image's root in place, and an updatable image's root is read-only")
	}
	in.updateKeys = b
	return nil
}

// readKeys reads and checks a public key file given as --update-key.
func readKeys(path string) ([]byte, []update.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("--update-key: %w", err)
	}
	keys, err := update.ParsePublicKeys(b)
	if err != nil {
		return nil, nil, fmt.Errorf("--update-key %s: %w", path, err)
	}
	return b, keys, nil
}

// loadNetbootKeys reads the keys a signed netboot tree's initramfs
// trusts (Options.NetbootKeys).
func (in *inputs) loadNetbootKeys(o *Options) error {
	if o.NetbootKeys == "" {
		return nil
	}
	if o.Initramfs != "" {
		return fmt.Errorf("--update-key %s: the keys are baked into the initramfs the build makes, not into a given --initramfs %s", o.NetbootKeys, o.Initramfs)
	}
	var err error
	in.netbootKeys, in.netbootPub, err = readKeys(o.NetbootKeys)
	return err
}

// versionID is the id of the version the inputs make, as its bundle
// names it.
func (in *inputs) versionID() (string, error) {
	v := bundle.Version{Board: in.board.Name, Cmdline: in.cmdline, Kernel: in.kernel.Image, Initrd: in.initrd, Root: in.root}
	if in.board.DTB != "" {
		v.DTB = in.dtb
	}
	return v.ID()
}

// versionedTop is the top level of an updatable root filesystem: the
// version's root at roots/<id>, and the btrfs options that make it a
// received read-only subvolume.
func versionedTop(root *fstree.Tree, id string, o btrfs.Options) (*fstree.Tree, btrfs.Options, error) {
	uuid, ctransid, err := update.RootIdentity(id)
	if err != nil {
		return nil, o, err
	}
	top := fstree.New(o.Time)
	if _, err := top.MkdirAll(versions.RootsDir, o.Time); err != nil {
		return nil, o, err
	}
	sub := versions.RootsDir + "/" + id
	if err := top.Put(sub, root.Root); err != nil {
		return nil, o, err
	}
	o.RootSubvolume = ""
	o.Subvolumes = []string{sub}
	o.Received = map[string]btrfs.Received{sub: {UUID: uuid, Transid: ctransid}}
	return top, o, nil
}

// versionedBoot is the boot partition of an updatable image.
func versionedBoot(in *inputs, id string, t time.Time) (*fstree.Tree, error) {
	boot := fstree.New(t)
	put := func(p string, data []byte) error { return putFile(boot, p, data, t) }
	dir := bootstate.VersionDir(id)
	info := BootInfo{
		Board: in.board.Name, Kernel: path.Join(dir, bootstate.KernelFile), Initrd: path.Join(dir, bootstate.InitrdFile),
		Cmdline: in.cmdline, Version: in.kernel.Version,
	}
	env, err := bootstate.BootEnv(in.cmdline)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{bootstate.KernelFile: in.kernel.Image, bootstate.InitrdFile: in.initrd, bootstate.BootEnvFile: env}
	if in.board.DTB != "" {
		files[bootstate.DTBFile] = in.dtb
		info.DTB = path.Join(dir, bootstate.DTBFile)
	}
	for name, data := range files {
		if err := put(path.Join(dir, name), data); err != nil {
			return nil, err
		}
	}
	st, err := bootstate.New(id)
	if err != nil {
		return nil, err
	}
	enc, err := st.Encode()
	if err != nil {
		return nil, err
	}
	for _, name := range []string{bootstate.EnvFile, bootstate.BakFile} {
		if err := put(name, enc); err != nil {
			return nil, err
		}
	}
	script, err := uboot.ScriptImage("mkimage counting boot", uboot.CountingScript(), t)
	if err != nil {
		return nil, err
	}
	if err := put(bootScript, script); err != nil {
		return nil, err
	}
	js, _ := json.MarshalIndent(info, "", "  ")
	return boot, put(bootInfo, append(js, '\n'))
}
