package builder

import (
	"context"
	"path/filepath"

	"github.com/mkimage/mkimage/internal/build/apt"
)

// aptCache is the tool's private arm64 apt state under the cache dir; the
// host's apt configuration and dpkg architectures are never touched.
func aptCache(o *Options) *apt.Cache {
	return &apt.Cache{Dir: filepath.Join(o.CacheDir, "apt"), Arch: "arm64", Log: o.Log}
}

// fetchKernel returns the path of Debian bookworm's current arm64 kernel
// package, downloading it into the cache when needed.
func fetchKernel(ctx context.Context, o *Options) (string, error) {
	f, err := aptCache(o).KernelPackage(ctx)
	if err != nil {
		return "", err
	}
	return f.Path, nil
}

// fetchPackage returns the path of an arm64 package's .deb in the cache.
func fetchPackage(ctx context.Context, o *Options, name string) (string, error) {
	fs, err := aptCache(o).Fetch(ctx, name)
	if err != nil {
		return "", err
	}
	return fs[0].Path, nil
}
