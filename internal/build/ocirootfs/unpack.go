package ocirootfs

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mkimage/mkimage/internal/build/rootfs"
	"github.com/mkimage/mkimage/internal/fstree"
)

// MaxRootSize bounds what an image's layers may unpack to, all layers
// together (file data plus 512 bytes an entry): the tree is held in
// memory, and a container for a small ARM board's card is far smaller.
const MaxRootSize = 8 << 30

// Layer is one layer's archive, as a reader and a name for errors.
type Layer struct {
	Name string
	Open func() (io.ReadCloser, error)
}

// Unpack lays the layers over each other in order into a new tree whose
// root and implied parent directories get epoch; budget bounds the bytes
// they add (<= 0: MaxRootSize). Whiteouts in a layer remove what lower
// ones put; nothing lands outside the tree (rootfs.AddTar refuses ".."
// and absolute names and never writes through a symlink).
func Unpack(layers []Layer, epoch time.Time, budget int64) (*fstree.Tree, error) {
	if budget <= 0 {
		budget = MaxRootSize
	}
	t := fstree.New(epoch)
	for _, l := range layers {
		r, err := l.Open()
		if err != nil {
			return nil, err
		}
		err = rootfs.AddTar(t, l.Name, r, rootfs.TarOptions{Epoch: epoch, Whiteouts: true, Budget: &budget})
		r.Close()
		if err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Tree unpacks the pulled image's layers (see Unpack); its implied
// directories get the image's creation time, so the tree depends on the
// image alone.
func (img *Image) Tree(budget int64) (*fstree.Tree, error) {
	var ls []Layer
	for i, f := range img.Layers {
		ls = append(ls, Layer{
			Name: fmt.Sprintf("%s layer %d", img.Ref, i),
			Open: func() (io.ReadCloser, error) { return os.Open(f) },
		})
	}
	return Unpack(ls, img.Created, budget)
}
