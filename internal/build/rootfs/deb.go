package rootfs

import (
	"archive/tar"
	"fmt"
	"io"

	"github.com/mkimage/mkimage/internal/build/deb"
	"github.com/mkimage/mkimage/internal/fstree"
)

// AddDeb unpacks the data of a .deb into t with the same rules as
// AddTar. It does not run maintainer scripts: the tree holds the files,
// not an installed package (see README, "The Debian root").
func AddDeb(t *fstree.Tree, pkg *deb.Package, opt TarOptions) error {
	x := extractor{t: t, opt: opt}
	return pkg.Data(func(hdr *tar.Header, r io.Reader) error {
		if err := x.entry(hdr, r); err != nil {
			return fmt.Errorf("%s: %s: entry %q: %w", pkg.Path, pkg.DataMember(), hdr.Name, err)
		}
		return nil
	})
}

// FromDeb returns a new tree holding the data of one .deb.
func FromDeb(pkg *deb.Package, opt TarOptions) (*fstree.Tree, error) {
	t := fstree.New(opt.Epoch)
	if err := AddDeb(t, pkg, opt); err != nil {
		return nil, err
	}
	return t, nil
}
