package kbuild

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mkimage/mkimage/internal/cachedir"
)

// Bases are the make targets Resolve accepts as the starting point the
// fragment is applied to. allnoconfig (the default) turns off everything
// the fragment does not ask for, so the kernel is small and every
// built-in feature is there because a fragment named it; alldefconfig
// starts from each symbol's Kconfig default instead (a larger kernel).
var Bases = []string{"allnoconfig", "alldefconfig"}

// Resolve applies fragment to base with the kernel's own Kconfig
// (make ARCH=arm64 O=<temp> KCONFIG_ALLCONFIG=<fragment> <base>) and
// returns the resulting .config. The source tree is not written to.
func (s *Source) Resolve(ctx context.Context, fragment []byte, base string, tc Toolchain) ([]byte, error) {
	ok := false
	for _, b := range Bases {
		ok = ok || b == base
	}
	if !ok {
		return nil, fmt.Errorf("config base %q: want one of %v", base, Bases)
	}
	// Cached by inputs, so an unchanged "mkimage kernel" run does not
	// rebuild scripts/kconfig.
	cached := filepath.Join(s.cache, "kconfig", shortHash(fmt.Sprintf("%s\n%s\n%s\n%v\n%s", recipe, s.ID, tc.Version, tc.MakeVars, base)+"\n"+string(fragment))+".config")
	if s.Cacheable() {
		if cfg, err := os.ReadFile(cached); err == nil {
			cachedir.Touch(cached)
			return cfg, nil
		}
	}
	if err := os.MkdirAll(s.cache, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(s.cache, ".kconfig-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	frag := filepath.Join(tmp, "fragment.config")
	if err := os.WriteFile(frag, fragment, 0o644); err != nil {
		return nil, err
	}
	obj := filepath.Join(tmp, "o")
	if err := os.Mkdir(obj, 0o755); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	cmd := s.make(ctx, obj, tc, "-s", "KCONFIG_ALLCONFIG="+frag, base)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("kernel %s: make %s failed: %v\n%s", s.Version, base, err, lastLines(out.String(), 20))
	}
	cfg, err := os.ReadFile(filepath.Join(obj, ".config"))
	if err != nil {
		return nil, fmt.Errorf("kernel %s: make %s wrote no .config: %w", s.Version, base, err)
	}
	if s.Cacheable() {
		if err := os.MkdirAll(filepath.Dir(cached), 0o755); err == nil {
			part := filepath.Join(tmp, "resolved.config")
			if os.WriteFile(part, cfg, 0o644) == nil {
				os.Rename(part, cached)
			}
		}
	}
	return cfg, nil
}
