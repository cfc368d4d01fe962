package builder

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/mkimage/mkimage/internal/build/progress"
	"github.com/mkimage/mkimage/internal/build/rootfs"
	"github.com/mkimage/mkimage/internal/cachedir"
	"github.com/mkimage/mkimage/internal/fstree"
)

// readKernel reads a kernel input. A .deb is unpacked once into the
// cache as a kernel directory (Image, dtbs/, lib/modules/<version>/),
// keyed by the package's sha256: decoding its 356 MB data.tar.xz costs
// tens of seconds, reading the directory well under one.
func readKernel(o *Options, path, sha string) (*rootfs.Kernel, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return rootfs.ReadKernel(path)
	}
	// "-2": the cached directory carries depmod's indexes since then.
	dir := filepath.Join(o.CacheDir, "kernels", sha+"-2")
	if _, err := os.Stat(filepath.Join(dir, "Image")); err == nil {
		cachedir.Touch(dir)
		return rootfs.ReadKernel(dir)
	}
	logf(o, "unpacking kernel package %s (once; cached by sha256)", filepath.Base(path))
	// Nothing here counts its way through the package: the meter shows
	// the time taken, so tens of seconds are not silent.
	m := progress.Start(o.Log, progress.Options{Label: "mkimage: unpacking kernel package"})
	k, err := rootfs.ReadKernel(path)
	if err == nil {
		err = saveKernel(o, k, dir)
		if err != nil {
			err = fmt.Errorf("caching the unpacked kernel in %s: %w", dir, err)
		}
	}
	m.Stop()
	if err != nil {
		return nil, err
	}
	// The directory has the package's times; its last use is now.
	cachedir.Touch(dir)
	// Read back from the directory so the first build and every later one
	// see the same tree (and give the same bytes).
	return rootfs.ReadKernel(dir)
}

// saveKernel writes k as a kernel directory, atomically: a temporary
// directory renamed into place.
func saveKernel(o *Options, k *rootfs.Kernel, dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".tmp-kernel-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.WriteFile(filepath.Join(tmp, "Image"), k.Image, 0o644); err != nil {
		return err
	}
	for name, data := range k.DTBs {
		p := filepath.Join(tmp, "dtbs", filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	if err := writeHostTree(k.Modules, tmp); err != nil {
		return err
	}
	depmod(o, tmp, k.Version)
	if err := os.Rename(tmp, dir); err != nil {
		// Another build cached the same kernel meanwhile: use its copy.
		if _, serr := os.Stat(filepath.Join(dir, "Image")); serr == nil {
			return nil
		}
		return err
	}
	return nil
}

// depmod writes the module indexes (modules.dep, modules.alias, ...) that
// Debian's kernel package leaves to its postinst: without them modprobe,
// systemd-modules-load and udev on the node load nothing. depmod reads
// ELF files of any architecture, so the host's serves; its output is the
// same for the same modules.
func depmod(o *Options, dir, version string) {
	bin, err := exec.LookPath("depmod")
	if err != nil {
		for _, p := range []string{"/usr/sbin/depmod", "/sbin/depmod"} {
			if _, e := os.Stat(p); e == nil {
				bin, err = p, nil
				break
			}
		}
	}
	if err != nil {
		logf(o, "warning: depmod not found (Debian package kmod): the node's modprobe will not find kernel modules")
		return
	}
	if out, err := exec.Command(bin, "-b", dir, version).CombinedOutput(); err != nil {
		logf(o, "warning: depmod %s: %v: %s", version, err, out)
	}
}

// writeHostTree writes the directories, regular files and symlinks of t
// under dir with their modes and mtimes (owners are not kept: the kernel
// directory is read back root-owned).
func writeHostTree(t *fstree.Tree, dir string) error {
	var dirs []string
	err := t.Walk(func(p string, n *fstree.Inode) error {
		dst := filepath.Join(dir, filepath.FromSlash(p))
		switch n.Type() {
		case fstree.ModeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
			dirs = append(dirs, p)
			return nil
		case fstree.ModeSymlink:
			return os.Symlink(n.Target, dst)
		case fstree.ModeRegular:
			f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(n.Mode&0o777))
			if err != nil {
				return err
			}
			if n.Content != nil {
				r, err := n.Content.Open()
				if err != nil {
					f.Close()
					return err
				}
				_, err = io.Copy(f, r)
				r.Close()
				if err != nil {
					f.Close()
					return err
				}
			}
			if err := f.Close(); err != nil {
				return err
			}
			return os.Chtimes(dst, n.Atime, n.Mtime)
		}
		return fmt.Errorf("/%s: a %s cannot be part of a kernel directory", p, fstree.TypeName(n.Mode))
	})
	if err != nil {
		return err
	}
	// Directory times last, after their entries were written.
	for i := len(dirs) - 1; i >= 0; i-- {
		n, _ := t.Lookup(dirs[i])
		dst := filepath.Join(dir, filepath.FromSlash(dirs[i]))
		if err := os.Chmod(dst, os.FileMode(n.Mode&0o777)); err != nil {
			return err
		}
		if err := os.Chtimes(dst, n.Atime, n.Mtime); err != nil {
			return err
		}
	}
	return nil
}
