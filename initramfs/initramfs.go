// Package initramfs builds a node's initramfs: a u-root busybox holding
// nodeinit (as /init) and a small rescue set of u-root commands, built for
// linux/arm64, plus the kernel modules the board needs in load order and
// files baked in by later stages. The result is a reproducible newc cpio,
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
	"strings"
	"time"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/internal/cpio"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/kmod"
	"github.com/ulikunitz/xz"
)

// Paths inside the initramfs that nodeinit reads.
const (
	// ModulesList lists module files, absolute paths, one a line, in
	// load order.
	ModulesList = "etc/nodeinit/modules"
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
	// is set.
	Board   *boards.Board
	Modules []string
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
	// Modules are the module names in load order.
	Modules []string
	// Cached is true when nothing had to be built.
	Cached bool
}

// DefaultCacheDir returns ${XDG_CACHE_HOME:-$HOME/.cache}/mkimage/initramfs.
func DefaultCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "mkimage", "initramfs"), nil
}

// Build builds the initramfs, or finds it in the cache.
func Build(ctx context.Context, o Options) (*Result, error) {
	logw := o.Log
	if logw == nil {
		logw = io.Discard
	}
	if o.CacheDir == "" {
		d, err := DefaultCacheDir()
		if err != nil {
			return nil, err
		}
		o.CacheDir = d
	}
	if err := os.MkdirAll(o.CacheDir, 0o755); err != nil {
		return nil, err
	}

	mods, loadOrder, err := resolveModules(o)
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
	// modules' bytes and paths, the baked files and the epoch.
	h := sha256.New()
	fmt.Fprintf(h, "mkimage initramfs v1\nbusybox %s\nepoch %d\n", bbKey, o.Epoch.Unix())
	for _, e := range mods {
		fmt.Fprintf(h, "module %s %x\n", e.path, sha256.Sum256(e.data))
	}
	if o.Files != nil {
		fmt.Fprintf(h, "files\n")
		if err := cpio.Write(h, normalized(o.Files, o.Epoch)); err != nil {
			return nil, fmt.Errorf("extra files: %w", err)
		}
	}
	key := hex.EncodeToString(h.Sum(nil))[:32]
	out := filepath.Join(o.CacheDir, "initramfs-"+key+".cpio.xz")
	if res, err := result(out, loadOrder, true); err == nil {
		fmt.Fprintf(logw, "initramfs: cached %s\n", out)
		return res, nil
	}

	bb, err := busybox(ctx, o.CacheDir, src, bbKey, logw)
	if err != nil {
		return nil, err
	}
	t, err := assemble(bb, mods, o)
	if err != nil {
		return nil, err
	}
	if err := writeXZ(out, t); err != nil {
		return nil, err
	}
	fmt.Fprintf(logw, "initramfs: wrote %s\n", out)
	return result(out, loadOrder, false)
}

func result(p string, modules []string, cached bool) (*Result, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	return &Result{Path: p, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:]), Modules: modules, Cached: cached}, nil
}

type moduleFile struct {
	path string // absolute path inside the initramfs
	data []byte // decompressed
}

// resolveModules reads the modules to include, in load order.
func resolveModules(o Options) ([]moduleFile, []string, error) {
	want := o.Modules
	if want == nil && o.Board != nil {
		want = o.Board.AllModules()
	}
	if len(want) == 0 {
		return nil, nil, nil
	}
	ver := o.KernelVersion
	var set *kmod.Set
	var err error
	switch {
	case o.ModulesFS != nil:
		if ver == "" {
			return nil, nil, fmt.Errorf("initramfs: KernelVersion is required with ModulesFS")
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
		return nil, nil, fmt.Errorf("modules %s wanted but no kernel modules directory given", strings.Join(want, ", "))
	}
	if err != nil {
		return nil, nil, err
	}
	plan, err := set.Resolve(want...)
	if err != nil {
		return nil, nil, fmt.Errorf("kernel %s: %w", ver, err)
	}
	var files []moduleFile
	var names []string
	for _, m := range plan.Load {
		data, err := set.ReadModule(m)
		if err != nil {
			return nil, nil, err
		}
		// Stored decompressed: the whole cpio is xz-compressed anyway
		// and nodeinit then needs no in-kernel decompression.
		p := m.Path
		for _, ext := range []string{".xz", ".zst", ".gz"} {
			p = strings.TrimSuffix(p, ext)
		}
		files = append(files, moduleFile{path: path.Join("lib/modules", ver, p), data: data})
		names = append(names, m.Name)
	}
	return files, names, nil
}

// assemble lays modules and extra files over the busybox tree and
// normalises owners and times.
func assemble(bb *fstree.Tree, mods []moduleFile, o Options) (*fstree.Tree, error) {
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
	var list bytes.Buffer
	for _, m := range mods {
		if _, err := t.MkdirAll(path.Dir(m.path), o.Epoch); err != nil {
			return nil, err
		}
		if err := t.Put(m.path, fstree.NewFile(0o644, m.data, o.Epoch)); err != nil {
			return nil, err
		}
		fmt.Fprintf(&list, "/%s\n", m.path)
	}
	if len(mods) > 0 {
		if err := t.Put(ModulesList, fstree.NewFile(0o644, list.Bytes(), o.Epoch)); err != nil {
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
	f, err := os.CreateTemp(filepath.Dir(p), ".initramfs-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
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
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), p)
}
