package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/internal/build/haproxy"
	"github.com/mkimage/mkimage/internal/build/rootfs"
	"github.com/mkimage/mkimage/internal/cluster"
	"github.com/mkimage/mkimage/internal/filehash"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/update"
	"github.com/mkimage/mkimage/overlays"
)

// Input is one input of a build as the manifest records it.
type Input struct {
	Kind   string `json:"kind"` // kernel, rootfs, overlay, bootloader, initramfs, config, package
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Note   string `json:"note,omitempty"`
}

// inputs is everything the build reads, loaded and checked.
type inputs struct {
	board    *boards.Board
	kernel   *rootfs.Kernel
	root     *fstree.Tree
	blob     []byte
	blobName string
	// dtb is the board's device tree as it goes on the card (fix-ups
	// applied); bootModules are the board's modules plus what its boot
	// path needs (see bootPath).
	dtb         []byte
	bootModules []string
	initrd      []byte
	list        []Input
	warnings    []string
	// cluster is the baked cluster config (JSON for nodeinit), nil
	// without --config.
	cluster []byte
	// config is the cluster config itself, nil without --config.
	config *cluster.Config
	// cmdline is the kernel command line of a card image; version is
	// the id of an updatable image's version ("" otherwise).
	cmdline    string
	version    string
	updateKeys []byte
	// netbootKeys is the key file baked into the initramfs for a signed
	// netboot tree (nil: none), netbootPub its keys.
	netbootKeys []byte
	netbootPub  []update.PublicKey
	// timings are the resolve stages' durations (Options.Timings).
	timings *Timings
}

// resolve loads every input and checks it before anything is written.
func resolve(ctx context.Context, o *Options) (*inputs, error) {
	b, err := boards.Get(o.Board)
	if err != nil {
		return nil, err
	}
	in := &inputs{board: b, timings: &Timings{}}

	// Cheap checks first: a bad config or blob fails before any download.
	steps := []struct {
		stage string
		load  func() error
	}{
		{"config", func() error { return in.loadConfig(ctx, o) }},
		{"bootloader", func() error { return in.loadBootloader(o) }},
		{"update keys", func() error { return in.loadUpdateKeys(o) }},
		{"netboot keys", func() error { return in.loadNetbootKeys(o) }},
		{"kernel", func() error { return in.loadKernel(ctx, o) }},
		{"device tree", func() error { return in.loadDeviceTree(o) }},
		{"root tree", func() error { return in.loadRoot(ctx, o) }},
		{"initramfs", func() error { return in.loadInitramfs(ctx, o) }},
	}
	for _, st := range steps {
		if err := in.timings.time("resolve "+st.stage, st.load); err != nil {
			return nil, err
		}
	}
	if err := in.addUpdater(o); err != nil {
		return nil, err
	}
	watchdog, err := in.watchdogTakeover(o)
	if err != nil {
		return nil, err
	}
	if err := in.root.Validate(); err != nil {
		return nil, fmt.Errorf("root filesystem: %w", err)
	}
	in.cmdline = strings.Join(append([]string{cmdline(b)}, o.Append...), " ")
	if updatable(o) {
		in.cmdline += " " + panicReboot
		if watchdog {
			in.cmdline += fmt.Sprintf(" nodeinit.watchdog=%d", o.Watchdog)
		}
		err := in.timings.time("version id", func() (err error) {
			in.version, err = in.versionID()
			return err
		})
		if err != nil {
			return nil, err
		}
		logf(o, "version %s", in.version)
	}
	return in, nil
}

// loadConfig reads and validates the cluster config: a bad config is an
// error before anything is written. nodeinit reads the baked JSON form.
func (in *inputs) loadConfig(ctx context.Context, o *Options) error {
	if o.Config == "" {
		return nil
	}
	c, err := cluster.Load(o.Config)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	if err := checkContainers(o, c); err != nil {
		return err
	}
	in.config = c
	baked := c.Bake()
	if rs := c.IngressRoutes(); len(rs) > 0 {
		// The same haproxy.cfg for every gateway; policy writes it there.
		cfg := haproxy.Generate(rs)
		checked, err := haproxy.Check(ctx, cfg)
		if err != nil {
			return fmt.Errorf("--config %s: %w", o.Config, err)
		}
		if !checked {
			logf(o, "haproxy.cfg for %d services not checked: haproxy is not installed here", len(rs))
		}
		for i := range baked.Nodes {
			if baked.Nodes[i].Role == "gateway" {
				baked.Nodes[i].HAProxyCfg = string(cfg)
			}
		}
	}
	js, err := json.MarshalIndent(baked, "", "  ")
	if err != nil {
		return fmt.Errorf("--config %s: %w", o.Config, err)
	}
	in.cluster = append(js, '\n')
	h, err := filehash.SHA256(o.Config)
	if err != nil {
		return err
	}
	in.add("config", o.Config, h, fmt.Sprintf("%d nodes", len(c.Resolve())))
	return nil
}

func (in *inputs) add(kind, path, sum, note string) {
	in.list = append(in.list, Input{Kind: kind, Path: path, SHA256: sum, Note: note})
}

func (in *inputs) loadKernel(ctx context.Context, o *Options) error {
	path := o.Kernel
	note := ""
	if path == "" {
		f, err := fetchKernel(ctx, o)
		if err != nil {
			return fmt.Errorf("kernel: no --kernel given and fetching Debian's arm64 kernel failed: %w", err)
		}
		path, note = f, "fetched from Debian bookworm"
	}
	h, err := pathSum(path)
	if err != nil {
		return fmt.Errorf("--kernel %s: %w", path, err)
	}
	k, err := readKernel(o, path, h)
	if err != nil {
		return fmt.Errorf("--kernel %s: %w", path, err)
	}
	if d := in.board.DTB; d != "" {
		if _, ok := k.DTBs[d]; !ok {
			return fmt.Errorf("--kernel %s: it has no device tree %s for board %s", path, d, in.board.Name)
		}
	}
	in.kernel = k
	in.add("kernel", path, h, strings.TrimSpace("version "+k.Version+" "+note))
	logf(o, "kernel %s (%s)", k.Version, path)
	return nil
}

func (in *inputs) loadRoot(ctx context.Context, o *Options) error {
	var root *fstree.Tree
	var err error
	switch {
	case len(o.Packages) > 0 && !isDebianRoot(o.Rootfs):
		return fmt.Errorf("--packages %s: packages go into a Debian root only (use --rootfs debian)", strings.Join(o.Packages, ","))
	case o.Rootfs == "minimal":
		root, err = minimalRoot(ctx, o, in)
		if err != nil {
			return fmt.Errorf("minimal root: %w", err)
		}
	case isDebianRoot(o.Rootfs):
		root, err = debianRoot(ctx, o, in)
		if err != nil {
			return fmt.Errorf("--rootfs %s: %w", o.Rootfs, err)
		}
	default:
		root, err = readTree(o.Rootfs, o, false)
		if err != nil {
			return fmt.Errorf("--rootfs %s: %w", o.Rootfs, err)
		}
		h, err := inputSum(o.Rootfs, root)
		if err != nil {
			return err
		}
		in.add("rootfs", o.Rootfs, h, "")
	}
	// The kernel's modules, so the running system can load what the
	// initramfs did not.
	root.Add(in.kernel.Modules)

	ovs, err := overlays.For(in.board.Name, o.Epoch)
	if err != nil {
		return err
	}
	for _, ov := range ovs {
		root.Add(ov)
	}
	for _, dir := range o.Overlays {
		ov, err := readTree(dir, o, true)
		if err != nil {
			return fmt.Errorf("--overlay %s: %w", dir, err)
		}
		h, err := inputSum(dir, ov)
		if err != nil {
			return err
		}
		root.Merge(ov)
		in.add("overlay", dir, h, "")
	}
	if err := in.addContainers(ctx, o, in.config, root); err != nil {
		return err
	}
	// Mount points nodeinit moves its mounts to, and where fstab mounts
	// the boot partition.
	for _, d := range []string{"proc", "sys", "dev", "run", "tmp", "boot/firmware"} {
		if _, err := root.MkdirAll(d, o.Epoch); err != nil {
			return fmt.Errorf("root filesystem: %w", err)
		}
	}
	in.root = root
	st := root.Stats()
	logf(o, "root tree: %d entries, %d inodes, %.1f MB of file data", st.Entries, st.Inodes, float64(st.DataBytes)/1e6)
	return nil
}

// readTree reads a directory or a tarball. Overlay directories from a
// source checkout are owned by whoever checked them out, so they are
// made root-owned; a root directory keeps its owners.
func readTree(path string, o *Options, overlay bool) (*fstree.Tree, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return rootfs.HostDir(path, rootfs.HostOptions{RootOwned: overlay && os.Geteuid() != 0, MtimeAsAtime: true})
	}
	return rootfs.Tarball(path, rootfs.TarOptions{Epoch: o.Epoch})
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// inputSum is the sha256 of a file input, or the hash of the tree read
// from a directory input.
func inputSum(path string, t *fstree.Tree) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if st.IsDir() {
		return t.Hash()
	}
	return filehash.SHA256(path)
}

// pathSum is the sha256 of a file, or of the tree read from a directory.
func pathSum(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if !st.IsDir() {
		return filehash.SHA256(path)
	}
	t, err := rootfs.HostDir(path, rootfs.HostOptions{MtimeAsAtime: true})
	if err != nil {
		return "", err
	}
	return t.Hash()
}
