package rootfs

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/compress"

	"github.com/mkimage/mkimage/internal/build/deb"
	"github.com/mkimage/mkimage/internal/fstree"
)

// Kernel is a built arm64 kernel: its Image, device trees and modules.
type Kernel struct {
	// Version is the module directory name, e.g. "6.1.0-56-arm64".
	Version string
	// Image is the raw arm64 Image U-Boot's booti loads (a gzip'd
	// vmlinuz is unpacked).
	Image []byte
	// DTBs by "vendor/board.dtb".
	DTBs map[string][]byte
	// Modules holds lib/modules/<Version>/... (Debian's usr/lib/modules
	// is moved to lib/modules).
	Modules *fstree.Tree

	modules map[string]string // normalised module name -> path in Modules
}

// ReadKernel reads a kernel from a Debian linux-image .deb or from a directory
// holding Image (or Image.gz), dtbs/<vendor>/<board>.dtb and
// lib/modules/<version>/.
func ReadKernel(p string) (*Kernel, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	var k *Kernel
	if st.IsDir() {
		k, err = kernelDir(p)
	} else {
		k, err = kernelDeb(p)
	}
	if err != nil {
		return nil, err
	}
	if k.Image, err = rawImage(k.Image); err != nil {
		return nil, fmt.Errorf("%s: kernel image: %w", p, err)
	}
	if err := k.index(); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return k, nil
}

func kernelDeb(p string) (*Kernel, error) {
	pkg, err := deb.Open(p)
	if err != nil {
		return nil, err
	}
	c := pkg.Control()
	if !strings.HasPrefix(c.Package, "linux-image-") {
		return nil, fmt.Errorf("%s: not a kernel package (package %q is not linux-image-*)", p, c.Package)
	}
	k := &Kernel{DTBs: map[string][]byte{}, Modules: fstree.New(time.Unix(0, 0))}
	var images []string
	x := extractor{t: k.Modules}
	err = pkg.Data(func(hdr *tar.Header, r io.Reader) error {
		name, err := entryPath(hdr.Name)
		if err != nil {
			return fmt.Errorf("%s: entry %q: %w", p, hdr.Name, err)
		}
		name = strings.TrimPrefix(name, "usr/")
		switch {
		case strings.HasPrefix(name, "boot/vmlinuz-") && hdr.Typeflag == tar.TypeReg:
			images = append(images, name)
			k.Version = strings.TrimPrefix(name, "boot/vmlinuz-")
			k.Image, err = io.ReadAll(r)
		case strings.HasPrefix(name, "lib/linux-image-") && strings.HasSuffix(name, ".dtb") && hdr.Typeflag == tar.TypeReg:
			// lib/linux-image-<ver>/<vendor>/<board>.dtb
			parts := strings.SplitN(name, "/", 3)
			if len(parts) == 3 {
				k.DTBs[parts[2]], err = io.ReadAll(r)
			}
		case strings.HasPrefix(name, "lib/modules/"):
			h := *hdr
			h.Name = name
			if hdr.Typeflag == tar.TypeLink {
				h.Linkname = strings.TrimPrefix(strings.TrimPrefix(hdr.Linkname, "./"), "usr/")
			}
			err = x.entry(&h, r)
		}
		if err != nil {
			return fmt.Errorf("%s: entry %q: %w", p, hdr.Name, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	switch len(images) {
	case 0:
		return nil, fmt.Errorf("%s: not a kernel package: no boot/vmlinuz-*", p)
	case 1:
	default:
		return nil, fmt.Errorf("%s: more than one kernel image (%s)", p, strings.Join(images, ", "))
	}
	if _, ok := k.Modules.Lookup("lib/modules/" + k.Version); !ok {
		return nil, fmt.Errorf("%s: no modules directory lib/modules/%s", p, k.Version)
	}
	return k, nil
}

func kernelDir(dir string) (*Kernel, error) {
	k := &Kernel{DTBs: map[string][]byte{}, Modules: fstree.New(time.Unix(0, 0))}
	var err error
	if k.Image, err = os.ReadFile(filepath.Join(dir, "Image")); os.IsNotExist(err) {
		k.Image, err = os.ReadFile(filepath.Join(dir, "Image.gz"))
	}
	if os.IsNotExist(err) {
		return nil, fmt.Errorf("%s: no kernel image (Image or Image.gz)", dir)
	}
	if err != nil {
		return nil, err
	}
	dtbs := filepath.Join(dir, "dtbs")
	err = filepath.WalkDir(dtbs, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".dtb") {
			return err
		}
		rel, _ := filepath.Rel(dtbs, p)
		k.DTBs[filepath.ToSlash(rel)], err = os.ReadFile(p)
		return err
	})
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	mods := filepath.Join(dir, "lib/modules")
	ents, err := os.ReadDir(mods)
	if os.IsNotExist(err) {
		return nil, fmt.Errorf("%s: no modules directory lib/modules/<version>", dir)
	}
	if err != nil {
		return nil, err
	}
	var versions []string
	for _, e := range ents {
		if e.IsDir() {
			versions = append(versions, e.Name())
		}
	}
	if len(versions) != 1 {
		return nil, fmt.Errorf("%s: want exactly one lib/modules/<version>, found %d (%s)", dir, len(versions), strings.Join(versions, ", "))
	}
	k.Version = versions[0]
	t, err := HostDir(filepath.Join(mods, k.Version), HostOptions{RootOwned: true, MtimeAsAtime: true})
	if err != nil {
		return nil, err
	}
	if _, err := k.Modules.MkdirAll("lib/modules", time.Unix(0, 0)); err != nil {
		return nil, err
	}
	if err := k.Modules.Put("lib/modules/"+k.Version, t.Root); err != nil {
		return nil, err
	}
	return k, nil
}

// rawImage unpacks a gzip'd Image and checks the arm64 Image header
// ("ARM\x64" at byte 56).
func rawImage(b []byte) ([]byte, error) {
	if compress.Sniff(b) == compress.Gzip {
		z, err := compress.NewReader(bytes.NewReader(b), compress.Gzip)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		if b, err = io.ReadAll(z); err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
	}
	if len(b) < 64 || string(b[56:60]) != "ARM\x64" {
		return nil, fmt.Errorf("not an arm64 Image (no ARM\\x64 magic at byte 56)")
	}
	return b, nil
}

// ModuleName normalises a module name as modprobe does: "-" and "_"
// are the same, and a path or .ko suffix is dropped.
func ModuleName(s string) string {
	s = path.Base(s)
	for _, suf := range []string{".xz", ".zst", ".gz"} {
		s = strings.TrimSuffix(s, suf)
	}
	s = strings.TrimSuffix(s, ".ko")
	return strings.ReplaceAll(s, "-", "_")
}

func (k *Kernel) index() error {
	k.modules = map[string]string{}
	base := "lib/modules/" + k.Version
	return k.Modules.Walk(func(p string, n *fstree.Inode) error {
		if n.Type() != fstree.ModeRegular || !strings.HasPrefix(p, base+"/") {
			return nil
		}
		name := path.Base(p)
		if !(strings.HasSuffix(name, ".ko") || strings.Contains(name, ".ko.")) {
			return nil
		}
		m := ModuleName(name)
		if prev, ok := k.modules[m]; ok {
			return fmt.Errorf("module %s twice: /%s and /%s", m, prev, p)
		}
		k.modules[m] = p
		return nil
	})
}

// ModulePath returns the path in Modules of a module by name ("btrfs",
// "virtio-blk" and "virtio_blk" alike).
func (k *Kernel) ModulePath(name string) (string, bool) {
	p, ok := k.modules[ModuleName(name)]
	return p, ok
}

// ModuleNames lists every module, normalised, sorted.
func (k *Kernel) ModuleNames() []string {
	out := make([]string, 0, len(k.modules))
	for m := range k.modules {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// Module returns a module's ELF bytes, uncompressed (modules may be
// stored as .ko.xz, .ko.zst or .ko.gz).
func (k *Kernel) Module(name string) ([]byte, error) {
	p, ok := k.ModulePath(name)
	if !ok {
		return nil, fmt.Errorf("kernel %s has no module %q", k.Version, name)
	}
	n, _ := k.Modules.Lookup(p)
	b, err := fstree.ReadAll(n.Content)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", p, err)
	}
	if strings.HasSuffix(p, ".ko") {
		return b, nil
	}
	r, _, err := Decompress(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", p, err)
	}
	defer r.Close()
	if b, err = io.ReadAll(r); err != nil {
		return nil, fmt.Errorf("module %s: %w", p, unexpected(err))
	}
	return b, nil
}

// DTB returns a device tree by "vendor/board.dtb".
func (k *Kernel) DTB(name string) ([]byte, error) {
	b, ok := k.DTBs[name]
	if !ok {
		return nil, fmt.Errorf("kernel %s has no device tree %q", k.Version, name)
	}
	return b, nil
}
