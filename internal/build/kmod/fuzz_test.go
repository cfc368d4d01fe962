package kmod_test

import (
	"debug/elf"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/build/kmod"
	"github.com/mkimage/mkimage/internal/testenv"
)

// FuzzParseModinfo parses .modinfo sections (from the kernel package, so
// from outside); every name it returns must be normalised and non-empty.
func FuzzParseModinfo(f *testing.F) {
	f.Add([]byte("license=GPL\x00depends=zstd_compress,raid6_pq,xor-neon\x00softdep=pre: crc32c post: foo-bar\x00alias=fs-btrfs\x00alias=of:N*T*Camlogic,meson-gx-mmcC*\x00"))
	// Real sections from a few modules of Debian's kernel in the cache.
	mods := testenv.CacheFiles("kernels/*/lib/modules/*/kernel/drivers/mmc/host/*.ko")
	for _, p := range mods[:min(len(mods), 4)] {
		if ef, err := elf.Open(p); err == nil {
			if sec := ef.Section(".modinfo"); sec != nil {
				if b, err := sec.Data(); err == nil {
					f.Add(b)
				}
			}
			ef.Close()
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in := kmod.ParseModinfo(b)
		for _, d := range in.Depends {
			if d == "" || strings.Contains(d, "-") {
				t.Fatalf("dependency %q not normalised", d)
			}
		}
		for _, d := range append(in.SoftPre, in.SoftPost...) {
			if d == "" || strings.ContainsAny(d, " \t\n") {
				t.Fatalf("soft dependency %q", d)
			}
		}
	})
}
