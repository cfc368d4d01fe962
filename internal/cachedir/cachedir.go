// Package cachedir says where mkimage keeps what it downloads and builds:
// ${XDG_CACHE_HOME:-$HOME/.cache}/mkimage, with one directory per kind
// (apt, initramfs, kernel, kernels, ...). One rule for every package and
// test, so a build, `mkimage initramfs` and the tests share one cache.
//
// It also manages what is there: Kinds says what each kind holds and what
// one entry of it is (the unit removed alone), List reports sizes and last
// uses, Prune removes entries no build used lately, and Touch is how a
// build marks an entry it took from the cache as used.
package cachedir

import (
	"os"
	"path/filepath"
	"time"
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

// Touch marks the cache entry at path as used now by setting its mtime,
// which is the last use List reports and Prune goes by. Call it where a
// build takes an entry from the cache (and where it stores one whose
// mtime is not now, as unpacked trees keep their archive's times). An
// error only means a later prune sees the entry older than it is, so
// callers go on without it.
func Touch(path string) error {
	now := time.Now()
	return os.Chtimes(path, now, now)
}
