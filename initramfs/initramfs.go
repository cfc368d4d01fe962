// Package initramfs builds a node's initramfs: a u-root busybox holding
// nodeinit (as /init) and a small rescue set of u-root commands, built for
// linux/arm64, plus the kernel modules the board needs in load order, the
// modules carried for coldplug with their alias index, and files baked in
// by later stages. The result is a reproducible newc cpio,
// xz-compressed with a CRC32 check (the kernel's XZ decoder accepts no
// other), cached by the hash of its inputs.
package initramfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/cachedir"

	"github.com/mkimage/mkimage/internal/atomicfile"

	"github.com/ulikunitz/xz"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/internal/build/cpio"
	"github.com/mkimage/mkimage/internal/build/kmod"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/modalias"
)

// Paths inside the initramfs that nodeinit reads.
const (
	// ModulesList lists module files, absolute paths, one a line, in
	// load order.
	ModulesList = "etc/nodeinit/modules"
	// ColdplugIndex is the modalias.Index of the modules carried for
	// coldplug: nodeinit loads each when a device present matches one
	// of its aliases.
	ColdplugIndex = "etc/nodeinit/coldplug"
	// CmdlineFile holds defaults in kernel command line syntax (root=,
	// rootflags=, nodeinit.timeout=); the real command line wins.
	CmdlineFile = "etc/nodeinit/cmdline"
	// ConfigDir is where later stages bake the node's configuration.
	ConfigDir = "etc/nodeinit"
)

// NodeinitPkg is nodeinit's import path; the busybox names it "nodeinit".
const NodeinitPkg = "github.com/mkimage/mkimage/cmd/nodeinit"

// RescueCommands are the u-root commands built beside nodeinit; each must
// be imported in tools.go so go.mod keeps it.
var RescueCommands = []string{
	"cat", "chroot", "cp", "dmesg", "echo", "free", "gosh", "grep", "insmod", "ip",
	"ls", "lsmod", "mkdir", "mount", "mv", "ps", "rm", "shutdown", "sync", "umount", "uname",
}

// Options say what goes into an initramfs.
type Options struct {
	// Board supplies the module list (Board.AllModules()) unless Modules
	// is set, and the coldplug list (Board.ColdplugModules) unless Coldplug is
	// set. Modules are loaded by name at every boot; Coldplug modules
	// are carried, with their dependencies and an alias index
	// (ColdplugIndex), and loaded when a device present matches them.
	Board    *boards.Board
	Modules  []string
	Coldplug []string
	// ModulesIfModular are loaded by name after Modules where the kernel
	// has them as module files; built in or absent, they are skipped
	// (nothing to load, and nothing missing).
	ModulesIfModular []string
	// ModulesFS is the kernel's lib/modules/<version> directory (from a
	// .deb, a build, a host directory); ModulesDir is the same as a host
	// path. With neither, the initramfs has no modules.
	ModulesFS  fs.FS
	ModulesDir string
	// KernelVersion is required with ModulesFS; with ModulesDir it
	// defaults to the directory's base name.
	KernelVersion string
	// Files are laid over the initramfs last (baked configuration under
	// /etc/nodeinit, a CmdlineFile). Owners, modes and times are
	// normalised like everything else.
	Files *fstree.Tree
	// Epoch is every entry's mtime (SOURCE_DATE_EPOCH).
	Epoch time.Time
	// CacheDir defaults to ${XDG_CACHE_HOME:-$HOME/.cache}/mkimage/initramfs.
	CacheDir string
	// SourceDir is the root of the mkimage module (the go.mod holding
	// cmd/nodeinit); empty means found upwards from the working
	// directory.
	SourceDir string
	// Log gets progress lines; nil discards them.
	Log io.Writer
}

// Result describes a built initramfs.
type Result struct {
	// Path is the cached .cpio.xz; treat it as read-only.
	Path   string
	Size   int64
	SHA256 string
	// Modules are the names of the modules loaded by name, in load
	// order.
	Modules []string
	// Coldplug are the names of the modules carried for coldplug
	// (dependencies included), sorted.
	Coldplug []string
	// Cached is true when nothing had to be built.
	Cached bool
}

// Build builds the initramfs, or finds it in the cache.
func Build(ctx context.Context, o Options) (*Result, error) {
	logw := o.Log
	if logw == nil {
		logw = io.Discard
	}
	if o.CacheDir == "" {
		o.CacheDir = cachedir.Dir("initramfs")
	}
	if err := os.MkdirAll(o.CacheDir, 0o755); err != nil {
		return nil, err
	}

	mp, err := resolveModules(o)
	if err != nil {
		return nil, err
	}

	src, err := sourceDir(o.SourceDir)
	if err != nil {
		return nil, err
	}
	bbKey, err := busyboxKey(ctx, src)
	if err != nil {
		return nil, err
	}

	// The final key covers every input: the busybox's sources, the
	// modules' bytes and paths, the load list, the coldplug index, the
	// baked files and the epoch.
	h := sha256.New()
	fmt.Fprintf(h, "mkimage initramfs v1\nbusybox %s\nepoch %d\n", bbKey, o.Epoch.Unix())
	for _, e := range mp.files {
		fmt.Fprintf(h, "module %s %x\n", e.path, sha256.Sum256(e.data))
	}
	fmt.Fprintf(h, "load %s\n", strings.Join(mp.load, " "))
	if mp.index != nil {
		fmt.Fprintf(h, "coldplug %x\n", sha256.Sum256(mp.index))
	}
	if o.Files != nil {
		fmt.Fprintf(h, "files\n")
		if err := cpio.Write(h, normalized(o.Files, o.Epoch)); err != nil {
			return nil, fmt.Errorf("extra files: %w", err)
		}
	}
	key := hex.EncodeToString(h.Sum(nil))[:32]
	out := filepath.Join(o.CacheDir, "initramfs-"+key+".cpio.xz")
	if res, err := result(out, mp, true); err == nil {
		cachedir.Touch(out)
		fmt.Fprintf(logw, "initramfs: cached %s\n", out)
		return res, nil
	}

	bb, err := busybox(ctx, o.CacheDir, src, bbKey, logw)
	if err != nil {
		return nil, err
	}
	t, err := assemble(bb, mp, o)
	if err != nil {
		return nil, err
	}
	if err := writeXZ(out, t); err != nil {
		return nil, err
	}
	fmt.Fprintf(logw, "initramfs: wrote %s\n", out)
	return result(out, mp, false)
}

func result(p string, mp *modulePlan, cached bool) (*Result, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	return &Result{Path: p, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:]), Modules: mp.load, Coldplug: mp.coldplug, Cached: cached}, nil
}

type moduleFile struct {
	path string // path inside the initramfs, without the leading '/'
	data []byte // decompressed
}

// modulePlan is what goes into the initramfs for modules.
type modulePlan struct {
	files    []moduleFile // every module file, each once
	load     []string     // names loaded by name, in load order
	coldplug []string     // names carried for coldplug, sorted
	index    []byte       // the ColdplugIndex file; nil without coldplug modules
}

// resolveModules reads the modules to include: those loaded by name in
// load order, then those carried for coldplug with their index.
func resolveModules(o Options) (*modulePlan, error) {
	want, cold := o.Modules, o.Coldplug
	if want == nil && o.Board != nil {
		want = o.Board.AllModules()
	}
	if cold == nil && o.Board != nil {
		cold = o.Board.ColdplugModules()
	}
	mp := &modulePlan{}
	if len(want) == 0 && len(cold) == 0 {
		return mp, nil
	}
	ver := o.KernelVersion
	var set *kmod.Set
	var err error
	switch {
	case o.ModulesFS != nil:
		if ver == "" {
			return nil, fmt.Errorf("initramfs: KernelVersion is required with ModulesFS")
		}
		set, err = kmod.Open(o.ModulesFS)
		if err != nil {
			err = fmt.Errorf("kernel %s modules: %w", ver, err)
		}
	case o.ModulesDir != "":
		if ver == "" {
			ver = filepath.Base(filepath.Clean(o.ModulesDir))
		}
		set, err = kmod.OpenDir(o.ModulesDir)
	default:
		return nil, fmt.Errorf("modules %s wanted but no kernel modules directory given", strings.Join(append(want, cold...), ", "))
	}
	if err != nil {
		return nil, err
	}
	for _, m := range o.ModulesIfModular {
		if _, ok := set.Module(m); ok {
			want = append(want[:len(want):len(want)], m)
		}
	}
	plan, err := set.Resolve(want...)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", ver, err)
	}
	cplan, err := set.Resolve(cold...)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: coldplug: %w", ver, err)
	}
	stored := map[string]string{} // module name → path inside the initramfs
	store := func(m kmod.Module) (string, error) {
		if p, ok := stored[m.Name]; ok {
			return p, nil
		}
		data, err := set.ReadModule(m)
		if err != nil {
			return "", err
		}
		// Stored decompressed: the whole cpio is xz-compressed anyway
		// and nodeinit then needs no in-kernel decompression.
		p := m.Path
		for _, ext := range []string{".xz", ".zst", ".gz"} {
			p = strings.TrimSuffix(p, ext)
		}
		p = path.Join("lib/modules", ver, p)
		mp.files = append(mp.files, moduleFile{path: p, data: data})
		stored[m.Name] = p
		return p, nil
	}
	for _, m := range plan.Load {
		if _, err := store(m); err != nil {
			return nil, err
		}
		mp.load = append(mp.load, m.Name)
	}
	if len(cplan.Load) == 0 {
		return mp, nil
	}
	var idx modalias.Index
	for _, m := range cplan.Load {
		p, err := store(m)
		if err != nil {
			return nil, err
		}
		// Each module's own closure is its load order; it lies within
		// the coldplug closure, so every name has a record.
		one, err := set.Resolve(m.Name)
		if err != nil {
			return nil, fmt.Errorf("kernel %s: coldplug: %w", ver, err)
		}
		rec := modalias.Module{Name: m.Name, Path: "/" + p}
		for _, d := range one.Load {
			rec.Load = append(rec.Load, d.Name)
		}
		idx.Modules = append(idx.Modules, rec)
		in, err := set.Info(m)
		if err != nil {
			return nil, err
		}
		for _, a := range in.Aliases {
			// No device's modalias holds white space; the index's
			// fields are separated by it.
			if !strings.ContainsAny(a, " \t\n") {
				idx.Aliases = append(idx.Aliases, modalias.Alias{Pattern: a, Module: m.Name})
			}
		}
		mp.coldplug = append(mp.coldplug, m.Name)
	}
	sort.Strings(mp.coldplug)
	if mp.index, err = idx.Marshal(); err != nil {
		return nil, fmt.Errorf("kernel %s: %w", ver, err)
	}
	return mp, nil
}

// assemble lays modules and extra files over the busybox tree and
// normalises owners and times.
func assemble(bb *fstree.Tree, mp *modulePlan, o Options) (*fstree.Tree, error) {
	t := bb
	for _, d := range []string{"dev", "proc", "sys", "run", "tmp", "newroot", ConfigDir} {
		if _, err := t.MkdirAll(d, o.Epoch); err != nil {
			return nil, err
		}
	}
	// The kernel opens /dev/console for PID 1's stdin, stdout and stderr
	// before anything could mount devtmpfs.
	if err := t.Put("dev/console", &fstree.Inode{Mode: fstree.ModeChar | 0o600, Major: 5, Minor: 1}); err != nil {
		return nil, err
	}
	for _, m := range mp.files {
		if _, err := t.MkdirAll(path.Dir(m.path), o.Epoch); err != nil {
			return nil, err
		}
		if err := t.Put(m.path, fstree.NewFile(0o644, m.data, o.Epoch)); err != nil {
			return nil, err
		}
	}
	if len(mp.load) > 0 {
		var list bytes.Buffer
		for _, f := range mp.files[:len(mp.load)] {
			fmt.Fprintf(&list, "/%s\n", f.path)
		}
		if err := t.Put(ModulesList, fstree.NewFile(0o644, list.Bytes(), o.Epoch)); err != nil {
			return nil, err
		}
	}
	if mp.index != nil {
		if err := t.Put(ColdplugIndex, fstree.NewFile(0o644, mp.index, o.Epoch)); err != nil {
			return nil, err
		}
	}
	if o.Files != nil {
		t.Merge(o.Files)
	}
	return normalized(t, o.Epoch), nil
}

// normalized sets every owner to 0:0, every time to epoch and drops
// xattrs, in place, and returns t.
func normalized(t *fstree.Tree, epoch time.Time) *fstree.Tree {
	t.Walk(func(_ string, n *fstree.Inode) error {
		n.Uid, n.Gid = 0, 0
		n.Atime, n.Mtime, n.Ctime = epoch, epoch, epoch
		n.Xattrs = nil
		return nil
	})
	return t
}

// writeXZ writes t as cpio.xz to p atomically.
func writeXZ(p string, t *fstree.Tree) error {
	f, err := atomicfile.Create(p, 0o644)
	if err != nil {
		return err
	}
	defer f.Abort() // nothing after Commit
	// The kernel's XZ decoder checks CRC32 only, and its dictionary must
	// fit the kernel's preallocation; xz's default 8 MiB does.
	zw, err := xz.WriterConfig{CheckSum: xz.CRC32, DictCap: 8 << 20}.NewWriter(f)
	if err != nil {
		return err
	}
	if err := cpio.Write(zw, t); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return f.Commit()
}
