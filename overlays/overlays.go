// Package overlays holds the project's own file trees laid over every
// image's root: common/ for all boards, then <board>/ where it exists.
package overlays

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"time"

	"github.com/mkimage/mkimage/internal/fstree"
)

//go:embed all:*
var files embed.FS

// For returns the trees to lay over the root for board, in order: common,
// then the board's own (if any). Owners are root; modes follow the rule in
// README.md; times are epoch.
func For(board string, epoch time.Time) ([]*fstree.Tree, error) {
	var out []*fstree.Tree
	for _, dir := range []string{"common", board} {
		if st, err := fs.Stat(files, dir); err != nil || !st.IsDir() {
			continue
		}
		t, err := load(dir, epoch)
		if err != nil {
			return nil, fmt.Errorf("overlay %s: %w", dir, err)
		}
		out = append(out, t)
	}
	return out, nil
}

func load(dir string, epoch time.Time) (*fstree.Tree, error) {
	t := fstree.New(epoch)
	err := fs.WalkDir(files, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel := p[len(dir)+1:]
		if d.IsDir() {
			return t.Put(rel, fstree.NewDir(0o755, epoch))
		}
		data, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		perm := uint32(0o644)
		if bytes.HasPrefix(data, []byte("#!")) {
			perm = 0o755
		}
		return t.Put(path.Clean(rel), fstree.NewFile(perm, data, epoch))
	})
	return t, err
}
