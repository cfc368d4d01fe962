package flash

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mkimage/mkimage/internal/bmap"
	"github.com/mkimage/mkimage/internal/compress"
)

// LoadMap finds the block map of an image: bmapPath if given, else
// found beside the image the way bmaptool finds it (node.img.zst.bmap,
// node.img.bmap, node.bmap: one extension stripped at a time). With none, it maps the image itself: the data
// extents of a raw image, or every non-zero block of a compressed one
// (which costs one extra decompression). from says which it used.
func LoadMap(imagePath, bmapPath string) (m *bmap.Map, from string, err error) {
	if bmapPath != "" {
		m, err := bmap.ReadFile(bmapPath)
		return m, bmapPath, err
	}
	k := compress.KindOf(imagePath)
	for p := imagePath; ; {
		m, err := bmap.ReadFile(p + ".bmap")
		if err == nil {
			return m, p + ".bmap", nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, "", fmt.Errorf("%w (pass --bmap FILE to use another)", err)
		}
		ext := filepath.Ext(p)
		if ext == "" {
			break
		}
		p = strings.TrimSuffix(p, ext)
	}
	f, err := os.Open(imagePath)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	if k == compress.None {
		m, err = bmap.FromFile(f)
		return m, "the image's data blocks (no .bmap found)", err
	}
	r, err := compress.NewReader(f, k)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", imagePath, err)
	}
	defer r.Close()
	m, err = bmap.ScanAll(r)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", imagePath, err)
	}
	return m, "the image's non-zero blocks (no .bmap found)", nil
}

// Confirm lists the block-device targets and asks y/N on the terminal.
func Confirm(in *os.File, out *os.File, imagePath string, targets []Target) (bool, error) {
	fmt.Fprintf(out, "About to write %s to, destroying all data on:\n", imagePath)
	for _, t := range targets {
		if !t.Block {
			continue
		}
		model := t.Disk.Model
		if model == "" {
			model = "(no model)"
		}
		fmt.Fprintf(out, "  %-14s %-24s %s\n", t.Path, model, human(t.Size))
		for _, p := range t.Problems {
			fmt.Fprintf(out, "      forced: %s\n", p)
		}
	}
	fmt.Fprintf(out, "Continue? [y/N] ")
	var b [64]byte
	n, err := in.Read(b[:])
	if err != nil && n == 0 {
		return false, err
	}
	a := strings.ToLower(strings.TrimSpace(string(b[:n])))
	return a == "y" || a == "yes", nil
}

// NeedsConfirm tells whether any target is a block device: files are
// never asked about.
func NeedsConfirm(targets []Target) bool {
	for _, t := range targets {
		if t.Block {
			return true
		}
	}
	return false
}
