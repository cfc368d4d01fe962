package builder

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/mkimage/mkimage/internal/build/apt"
	"github.com/mkimage/mkimage/internal/build/deb"
	"github.com/mkimage/mkimage/internal/build/debroot"
	"github.com/mkimage/mkimage/internal/build/progress"
	"github.com/mkimage/mkimage/internal/cachedir"
	"github.com/mkimage/mkimage/internal/fstree"
)

// DefaultSuite is the Debian suite of `--rootfs debian`.
const DefaultSuite = "bookworm"

// isDebianRoot reports whether --rootfs names a Debian root to build
// ("debian" or "debian:SUITE") rather than a directory or tarball (write
// ./debian for a directory of that name).
func isDebianRoot(s string) bool {
	return s == "debian" || strings.HasPrefix(s, "debian:")
}

// checkDebianOnly rejects the options only a Debian root has a meaning
// for.
func checkDebianOnly(o *Options) error {
	for _, f := range []struct {
		flag string
		set  bool
	}{{"--preconfigure", o.Preconfigure}, {"--slim", o.Slim}} {
		if f.set && !isDebianRoot(o.Rootfs) {
			return fmt.Errorf("%s: only for a Debian root (--rootfs debian[:SUITE]), not --rootfs %s", f.flag, o.Rootfs)
		}
	}
	return nil
}

// debianRoot builds a Debian arm64 root from packages: Essential and
// required, the node set and --packages, resolved from the apt cache's
// lists, fetched and checked, unpacked without running anything; a
// first-boot hook configures them on the node.
func debianRoot(ctx context.Context, o *Options, in *inputs) (*fstree.Tree, error) {
	suite := DefaultSuite
	if s, ok := strings.CutPrefix(o.Rootfs, "debian:"); ok {
		if s == "" {
			return nil, fmt.Errorf("no suite after \"debian:\" (for example debian:%s)", DefaultSuite)
		}
		suite = s
	}
	c := aptCache(o)
	pkgs, err := DebianPackages(ctx, c, suite, o.Packages)
	if err != nil {
		return nil, err
	}
	logf(o, "debian %s: %d packages (Essential, required, node set%s)%s", suite, len(pkgs), map[bool]string{true: ", --packages", false: ""}[len(o.Packages) > 0], map[bool]string{true: ", slim", false: ""}[o.Slim])
	debs, err := FetchDebs(ctx, c, pkgs)
	if err != nil {
		return nil, err
	}
	var unpacked progress.Latest
	m := progress.Start(o.Log, progress.Options{Label: "mkimage: debian root", Unit: "packages unpacked", Watch: unpacked.Report})
	root, err := debroot.Build(debs, debroot.Options{Arch: c.Arch, Suite: suite, Epoch: o.Epoch, Slim: o.Slim,
		Progress: func(done, total int, name string) {
			r := progress.Report{Done: progress.Counts{Items: done}, Total: progress.Counts{Items: total}}
			if name != "" {
				r.Note = "unpacking " + name
			}
			unpacked.Set(r)
		},
	})
	m.Stop()
	if err != nil {
		return nil, err
	}
	for _, d := range debs {
		in.add("package", d.Path, d.Pkg.SHA256, d.Pkg.Name+" "+d.Pkg.Version+" (debian root)")
	}
	if err := addKernelConfig(o, in, root); err != nil {
		logf(o, "warning: no kernel config in the root (lxc-checkconfig will not find it): %v", err)
	}
	return root, nil
}

// DebianPackages resolves the package set of a Debian root of suite
// from the apt cache's lists (updated when stale): Essential and
// required, the node set and extra, with their dependencies.
func DebianPackages(ctx context.Context, c *apt.Cache, suite string, extra []string) ([]*debroot.Pkg, error) {
	ix, err := debianIndex(ctx, c, suite)
	if err != nil {
		return nil, err
	}
	names := append(debroot.BaseNames(ix, c.Arch), debroot.NodePackages...)
	return debroot.Resolve(ix, c.Arch, append(names, extra...)...)
}

// debianIndex loads the apt cache's lists of suite, updated when stale.
func debianIndex(ctx context.Context, c *apt.Cache, suite string) (*debroot.Index, error) {
	if err := c.Update(ctx); err != nil {
		return nil, err
	}
	files, err := debroot.ListFiles(filepath.Join(c.Dir, "lists"), suite, c.Arch)
	if err != nil {
		return nil, err
	}
	return debroot.LoadIndex(files...)
}

// FetchDebs returns each package's .deb from the cache, fetching the
// missing ones with one apt-get download and checking each against the
// index's sha256 (debroot.Build checks every file again).
func FetchDebs(ctx context.Context, c *apt.Cache, pkgs []*debroot.Pkg) ([]debroot.Deb, error) {
	entries := make([]apt.Entry, len(pkgs))
	for i, p := range pkgs {
		size, err := strconv.ParseInt(p.Size, 10, 64)
		if err != nil || p.SHA256 == "" {
			return nil, fmt.Errorf("package %s %s: the index gives no SHA256 or a bad Size %q; the package lists may be damaged: remove %s and build again", p.Name, p.Version, p.Size, filepath.Join(c.Dir, "lists"))
		}
		entries[i] = apt.Entry{Name: p.Name, Version: p.Version, Arch: p.Arch, SHA256: p.SHA256, Size: size}
	}
	fs, err := c.FetchEntries(ctx, entries)
	if err != nil {
		return nil, err
	}
	out := make([]debroot.Deb, len(pkgs))
	for i, p := range pkgs {
		out[i] = debroot.Deb{Pkg: p, Path: fs[i].Path}
	}
	return out, nil
}

// addKernelConfig puts the kernel's config at /boot/config-VERSION, where
// lxc-checkconfig and other tools look for it (Debian kernels have no
// /proc/config.gz). It is read once from the kernel .deb and cached by
// the .deb's sha256.
func addKernelConfig(o *Options, in *inputs, root *fstree.Tree) error {
	var kin *Input
	for i := range in.list {
		if in.list[i].Kind == "kernel" {
			kin = &in.list[i]
		}
	}
	if kin == nil || !strings.HasSuffix(kin.Path, ".deb") {
		return fmt.Errorf("the kernel is not a .deb")
	}
	name := "boot/config-" + in.kernel.Version
	cache := filepath.Join(o.CacheDir, "kernel-config", kin.SHA256)
	data, err := os.ReadFile(cache)
	if err == nil {
		cachedir.Touch(cache)
	} else {
		pkg, err := deb.Open(kin.Path)
		if err != nil {
			return err
		}
		err = pkg.Data(func(h *tar.Header, r io.Reader) error {
			if strings.TrimPrefix(h.Name, "./") == name && h.Typeflag == tar.TypeReg {
				data, err = io.ReadAll(r)
				if err != nil {
					return err
				}
				return io.EOF
			}
			return nil
		})
		if err != nil && err != io.EOF {
			return err
		}
		if data == nil {
			return fmt.Errorf("%s has no %s", kin.Path, name)
		}
		if err := os.MkdirAll(filepath.Dir(cache), 0o755); err == nil {
			os.WriteFile(cache, data, 0o644)
		}
	}
	if _, err := root.MkdirAll("boot", o.Epoch); err != nil {
		return err
	}
	return root.Put(name, fstree.NewFile(0o644, data, o.Epoch))
}
