package modalias_test

import (
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/modalias"
)

// FuzzMatchAlias checks alias matching against references: a pattern
// with no special bytes matches only itself; one with only '*' and '?'
// matches as its regular expression does; with classes and no '/' nor
// '!', as path.Match does where it takes the pattern.
func FuzzMatch(f *testing.F) {
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
	f.Fuzz(func(t *testing.T, pattern, dev string) {
		got := modalias.Match(pattern, dev)
		if !strings.ContainsAny(pattern, `*?[\`) {
			if got != (pattern == dev) {
				t.Fatalf("literal %q vs %q: %v", pattern, dev, got)
			}
			return
		}
		if !isASCII(pattern + dev) {
			return // regexp counts runes where fnmatch counts bytes
		}
		if !strings.ContainsAny(pattern, `[\`) {
			re := "(?s)^" + strings.NewReplacer(`\*`, ".*", `\?`, ".").Replace(regexp.QuoteMeta(pattern)) + "$"
			if want := regexp.MustCompile(re).MatchString(dev); got != want {
				t.Fatalf("Match(%q, %q) = %v, regexp %s says %v", pattern, dev, got, re, want)
			}
			return
		}
		if strings.Contains(pattern+dev, "/") || strings.Contains(pattern, "!") {
			return
		}
		if want, err := path.Match(pattern, dev); err == nil && got != want {
			t.Fatalf("Match(%q, %q) = %v, path.Match says %v", pattern, dev, got, want)
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

func TestMatchFnmatch(t *testing.T) {
	for _, tt := range []struct {
		pattern, dev string
		want         bool
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
		if got := modalias.Match(tt.pattern, tt.dev); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.dev, got, tt.want)
		}
	}
}
