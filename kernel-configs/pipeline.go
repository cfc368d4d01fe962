package kernelconfig

import (
	"bytes"
	"context"
	"fmt"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/internal/build/kbuild"
	"github.com/mkimage/mkimage/internal/build/kconfig"
)

// ForBoardMerged merges the board's fragments, then extra ones (later wins).
func ForBoardMerged(b *boards.Board, extra ...*Fragment) (*Merged, error) {
	frags, err := ForBoard(b)
	if err != nil {
		return nil, err
	}
	return Merge(append(frags, extra...)...), nil
}

// Resolution is a merged fragment resolved by a kernel's own Kconfig.
type Resolution struct {
	Merged *Merged
	Config []byte // the resolved .config
	Losses []Loss // requested values that did not survive, explained
	// Warnings are Kconfig lines the explaining parser could not follow.
	Warnings []string
}

// Fatal returns the losses of required settings.
func (r *Resolution) Fatal() []Loss {
	var f []Loss
	for _, l := range r.Losses {
		if l.Fatal() {
			f = append(f, l)
		}
	}
	return f
}

// Resolve applies m to base ("allnoconfig" or "alldefconfig") with the
// source's Kconfig and explains every requested value that was lost.
func Resolve(ctx context.Context, m *Merged, src *kbuild.Source, base string, tc kbuild.Toolchain) (*Resolution, error) {
	var frag bytes.Buffer
	if _, err := m.WriteTo(&frag); err != nil {
		return nil, err
	}
	cfg, err := src.Resolve(ctx, frag.Bytes(), base, tc)
	if err != nil {
		return nil, err
	}
	got, err := ParseConfig("resolved .config", bytes.NewReader(cfg))
	if err != nil {
		return nil, err
	}
	tree, err := kconfig.Parse(src.Dir, kbuild.Arch)
	if err != nil {
		return nil, fmt.Errorf("explaining the config: %w", err)
	}
	return &Resolution{Merged: m, Config: cfg, Losses: Compare(m, got, tree), Warnings: tree.Warnings}, nil
}
