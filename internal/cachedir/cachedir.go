// Package cachedir says where mkimage keeps what it downloads and builds:
// ${XDG_CACHE_HOME:-$HOME/.cache}/mkimage, with one directory per kind
// (apt, initramfs, kernel, kernels, ...). One rule for every package and
// test, so a build, `mkimage initramfs` and the tests share one cache.
package cachedir

import (
	"os"
	"path/filepath"
)

// Root is ${XDG_CACHE_HOME:-$HOME/.cache}/mkimage, or a directory under
// the system's temporary directory when there is no home.
func Root() string {
	d, err := os.UserCacheDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "mkimage-cache")
	}
	return filepath.Join(d, "mkimage")
}

// Dir is Root/kind.
func Dir(kind string) string { return filepath.Join(Root(), kind) }
