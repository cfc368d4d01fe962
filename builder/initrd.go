package builder

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mkimage/mkimage/initramfs"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/node/netfetch"
)

// policyModules are loaded by nodeinit when a cluster config asks for
// forwarding, NAT or an LXC bridge (Debian's kernel has them as modules;
// the bridge family of the containers' anti-spoofing table is part of
// nf_tables itself).
var policyModules = []string{"nf_tables", "nf_conntrack", "nft_ct", "nf_nat", "nft_nat", "nft_chain_nat", "nft_masq", "nft_reject_ipv4", "nft_reject_inet", "bridge", "veth"}

// policyModulesIfModular are loaded too where the kernel has them as
// modules (built in or absent, nothing is needed): with nft_meta_bridge a
// module, nf_tables refuses any meta match (iifname) in a bridge-family
// table until it is loaded (nft_meta_select_ops), and the initramfs has
// no modprobe for the kernel to load it on demand. Debian's kernel is
// such a kernel; the anti-spoofing table needs it.
var policyModulesIfModular = []string{"nft_meta_bridge"}

// InitrdEpoch is the time of every initramfs entry, whatever
// SOURCE_DATE_EPOCH says: nothing reads those times, and with them fixed
// versions built from the same inputs share the initramfs byte for byte
// (and its cache entry), so an update copies it on the card instead of
// every node downloading it again.
var InitrdEpoch = time.Unix(0, 0).UTC()

func (in *inputs) loadInitramfs(ctx context.Context, o *Options) error {
	if o.Initramfs != "" {
		if len(o.Coldplug) > 0 {
			return fmt.Errorf("--coldplug %s: modules for the initramfs the build makes; a given --initramfs %s cannot change", strings.Join(o.Coldplug, ","), o.Initramfs)
		}
		data, err := os.ReadFile(o.Initramfs)
		if err != nil {
			return fmt.Errorf("--initramfs: %w", err)
		}
		in.initrd = data
		in.add("initramfs", o.Initramfs, sum(data), "given")
		return nil
	}
	mods, err := fs.Sub(in.kernel.Modules.FS(), filepath.Join("lib/modules", in.kernel.Version))
	if err != nil {
		return err
	}
	want := append([]string(nil), in.bootModules...)
	var ifModular []string
	cold := append(append([]string{}, in.board.Coldplug...), o.Coldplug...)
	wd, err := in.watchdogModule(o)
	if err != nil {
		return err
	}
	if wd != "" {
		cold = append(cold, wd)
	}
	files := fstree.New(InitrdEpoch)
	if in.cluster != nil {
		want = append(want, policyModules...)
		ifModular = policyModulesIfModular
		if _, err := files.MkdirAll(initramfs.ConfigDir, InitrdEpoch); err != nil {
			return err
		}
		if err := files.Put(initramfs.ConfigDir+"/cluster.json", fstree.NewFile(0o644, in.cluster, InitrdEpoch)); err != nil {
			return err
		}
	}
	if in.netbootKeys != nil {
		if err := putFile(files, strings.TrimPrefix(netfetch.KeysPath, "/"), in.netbootKeys, o.Epoch); err != nil {
			return err
		}
	}
	logf(o, "initramfs: nodeinit + rescue commands + %d modules + %d for coldplug", len(want), len(cold))
	res, err := initramfs.Build(ctx, initramfs.Options{
		Board: in.board, Modules: want, ModulesIfModular: ifModular, Coldplug: cold, ModulesFS: mods, KernelVersion: in.kernel.Version,
		Files: files, Epoch: InitrdEpoch, CacheDir: filepath.Join(o.CacheDir, "initramfs"), Log: o.Log,
	})
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	data, err := os.ReadFile(res.Path)
	if err != nil {
		return err
	}
	in.initrd = data
	// Whether it came from the cache is logged (by initramfs.Build), not
	// recorded: the manifest must not depend on the cache's state.
	in.add("initramfs", res.Path, res.SHA256, fmt.Sprintf("%d modules, %d for coldplug", len(res.Modules), len(res.Coldplug)))
	return nil
}
