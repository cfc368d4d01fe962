package kmod_test

import (
	"debug/elf"
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/kmod"
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

// FuzzMatchAlias checks alias matching against references: a pattern
// with no special bytes matches only itself; one with only '*' and '?'
// matches as its regular expression does; with classes and no '/' nor
// '!', as path.Match does where it takes the pattern.
func FuzzMatchAlias(f *testing.F) {
	for _, s := range [][2]string{
		{"of:N*T*Camlogic,meson-gx-mmcC*", "of:NmmcT(null)Camlogic,meson-gx-mmc"},
		{"usb:v0BDAp8153d*dc*dsc*dp*ic*isc*ip*in*", "usb:v0BDAp8153d3000dc00dsc00dp00icFFisc00ip00in00"},
		{"pci:v00008086d*sv*sd*bc0Csc03i30*", "pci:v00008086d00001E31sv0sd0bc0Csc03i30"},
		{"acpi*:PNP0C0[AB]:*", "acpi:PNP0C0A:"},
		{"of:N*T*Cfoo/bar", "of:NxT(null)Cfoo/bar"},
		{`a\*b[!x-z]?`, "a*bq1"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, modalias string) {
		got := kmod.MatchAlias(pattern, modalias)
		if !strings.ContainsAny(pattern, `*?[\`) {
			if got != (pattern == modalias) {
				t.Fatalf("literal %q vs %q: %v", pattern, modalias, got)
			}
			return
		}
		if !isASCII(pattern + modalias) {
			return // regexp counts runes where fnmatch counts bytes
		}
		if !strings.ContainsAny(pattern, `[\`) {
			re := "(?s)^" + strings.NewReplacer(`\*`, ".*", `\?`, ".").Replace(regexp.QuoteMeta(pattern)) + "$"
			if want := regexp.MustCompile(re).MatchString(modalias); got != want {
				t.Fatalf("MatchAlias(%q, %q) = %v, regexp %s says %v", pattern, modalias, got, re, want)
			}
			return
		}
		if strings.Contains(pattern+modalias, "/") || strings.Contains(pattern, "!") {
			return
		}
		if want, err := path.Match(pattern, modalias); err == nil && got != want {
			t.Fatalf("MatchAlias(%q, %q) = %v, path.Match says %v", pattern, modalias, got, want)
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func TestMatchAlias(t *testing.T) {
	for _, tt := range []struct {
		pattern, modalias string
		want              bool
	}{
		// path.Match, used before, stops '*' at '/'; fnmatch does not.
		{"of:N*T*Cfoo", "of:Na/bT(null)Cfoo", true},
		{"platform:*", "platform:x/y", true},
		{"of:N*T*Camlogic,meson-gx-mmc", "of:NmmcT(null)Camlogic,meson-gx-mmc", true},
		{"of:N*T*Camlogic,meson-gx-mmcC*", "of:NmmcT(null)Camlogic,meson-gx-mmc", false},
		{"of:N*T*Camlogic,meson-gx-mmcC*", "of:NmmcT(null)Camlogic,meson-gx-mmcCx", true},
		{"acpi*:PNP0C0[AB]:*", "acpi:PNP0C0B:", true},
		{"acpi*:PNP0C0[!AB]:*", "acpi:PNP0C0B:", false},
		{"acpi*:PNP0C0[^AB]:*", "acpi:PNP0C0C:", true},
		{"a[", "a[", true}, // no class: a plain '['
		{`a\*`, "a*", true},
		{`a\*`, "ab", false},
		{"*?", "", false},
	} {
		if got := kmod.MatchAlias(tt.pattern, tt.modalias); got != tt.want {
			t.Errorf("MatchAlias(%q, %q) = %v, want %v", tt.pattern, tt.modalias, got, tt.want)
		}
	}
}
