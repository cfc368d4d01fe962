package builder

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/build/btrfs"
	"github.com/mkimage/mkimage/internal/fstree"
)

// rootWriter writes the root filesystem into the root partition.
type rootWriter interface {
	minSize(t *fstree.Tree) (int64, error)
	// write fills [0, size) of w and returns the ranges it wrote; it
	// reports its bytes written of their total to report when it can.
	write(ctx context.Context, w io.WriterAt, size int64, t *fstree.Tree, seed []byte, report func(done, total int64)) ([]extent, error)
}

func rootWriterFor(o *Options, in *inputs) rootWriter {
	if o.Backend == "mkfs" {
		return mkfsWriter{o: o}
	}
	return nativeWriter{o: o, version: in.version}
}

// nativeWriter is the Go btrfs writer: exact, reproducible, rootless.
// With a version it writes an updatable image's layout (versionedTop).
type nativeWriter struct {
	o       *Options
	version string
}

// RootFS returns the btrfs options of every node's root filesystem: label
// "root" (what nodeinit finds it by), the tree in default subvolume "@",
// nested subvolumes for snapshots and LXC containers. Card images and
// netboot roots share it.
func RootFS(epoch time.Time) btrfs.Options {
	return btrfs.Options{
		Label: rootLabel, Time: epoch,
		RootSubvolume: rootSubvolume, Subvolumes: append([]string(nil), rootSubvolumes...),
	}
}

func (n nativeWriter) opts(seed []byte, size int64) btrfs.Options {
	o := RootFS(n.o.Epoch)
	o.Seed, o.Size = seed, size
	if n.o.MetadataSingle {
		o.Metadata = btrfs.Single
	}
	return o
}

// layout returns the tree and options the writer gets for root t.
func (n nativeWriter) layout(t *fstree.Tree, seed []byte, size int64) (*fstree.Tree, btrfs.Options, error) {
	o := n.opts(seed, size)
	if n.version == "" {
		return t, o, nil
	}
	return versionedTop(t, n.version, o)
}

func (n nativeWriter) minSize(t *fstree.Tree) (int64, error) {
	t, o, err := n.layout(t, nil, 0)
	if err != nil {
		return 0, err
	}
	return btrfs.MinSize(t, o)
}

func (n nativeWriter) write(ctx context.Context, w io.WriterAt, size int64, t *fstree.Tree, seed []byte, report func(done, total int64)) ([]extent, error) {
	t, o, err := n.layout(t, seed, size)
	if err != nil {
		return nil, err
	}
	o.Progress = report
	res, err := btrfs.Write(w, t, o)
	if err != nil {
		return nil, err
	}
	out := make([]extent, 0, len(res.Mapped))
	for _, e := range res.Mapped {
		out = append(out, extent{e.Offset, e.Length})
	}
	return out, nil
}

// mkfsWriter runs mkfs.btrfs --rootdir (btrfs-progs) on the tree laid out
// in a temporary directory. Ordinary users need fakeroot for the owners
// and device nodes; the tree is unpacked and mkfs run inside one fakeroot
// session. It cannot write subvolumes (progs 6.2), nanosecond times or
// device numbers exactly; it stays as a cross-check of the native writer.
type mkfsWriter struct{ o *Options }

func (m mkfsWriter) minSize(t *fstree.Tree) (int64, error) {
	// mkfs.btrfs needs room for its DUP metadata and temporary chunks
	// beyond what the native writer packs the same tree into.
	n, err := nativeWriter{o: m.o}.minSize(t)
	if err != nil {
		return 0, err
	}
	return n + n/4 + 128<<20, nil
}

// write reports nothing: mkfs.btrfs says nothing of how far it is.
func (m mkfsWriter) write(ctx context.Context, w io.WriterAt, size int64, t *fstree.Tree, seed []byte, _ func(done, total int64)) ([]extent, error) {
	if _, err := exec.LookPath("mkfs.btrfs"); err != nil {
		return nil, fmt.Errorf("the mkfs backend needs mkfs.btrfs (Debian package btrfs-progs): %w", err)
	}
	dir, err := os.MkdirTemp("", "mkimage-mkfs-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	tarPath := filepath.Join(dir, "root.tar")
	if err := writeTar(tarPath, t); err != nil {
		return nil, err
	}
	rootDir := filepath.Join(dir, "root")
	fsImg := filepath.Join(dir, "root.btrfs")
	if err := os.Mkdir(rootDir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(fsImg)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return nil, err
	}
	script := fmt.Sprintf("tar --numeric-owner --xattrs --xattrs-include='*' -xpf %q -C %q && mkfs.btrfs -q -f -L %s --rootdir %q %q",
		tarPath, rootDir, rootLabel, rootDir, fsImg)
	cmd := exec.CommandContext(ctx, "sh", "-c", script)
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("fakeroot"); err != nil {
			return nil, fmt.Errorf("the mkfs backend needs fakeroot as an ordinary user (Debian package fakeroot): %w", err)
		}
		cmd = exec.CommandContext(ctx, "fakeroot", "sh", "-c", script)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("mkfs.btrfs: %v: %s", err, strings.TrimSpace(string(out)))
	}
	// Copy the data regions of the sparse result into the partition.
	var ext []extent
	buf := make([]byte, 4<<20)
	for off := int64(0); off < size; {
		data, err := seekData(f, off)
		if err != nil || data >= size {
			break
		}
		hole, err := seekHole(f, data)
		if err != nil {
			return nil, err
		}
		for p := data; p < hole; {
			n := min(int64(len(buf)), hole-p)
			if _, err := f.ReadAt(buf[:n], p); err != nil {
				return nil, err
			}
			if _, err := w.WriteAt(buf[:n], p); err != nil {
				return nil, err
			}
			p += n
		}
		ext = append(ext, extent{data, hole - data})
		off = hole
	}
	return ext, nil
}

func seekData(f *os.File, off int64) (int64, error) { return f.Seek(off, 3) } // SEEK_DATA
func seekHole(f *os.File, off int64) (int64, error) { return f.Seek(off, 4) } // SEEK_HOLE

// writeTar writes t as a tar archive with exact owners, modes, times,
// xattrs, device numbers and hard links.
func writeTar(path string, t *fstree.Tree) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	first := map[*fstree.Inode]string{}
	err = t.Walk(func(p string, n *fstree.Inode) error {
		if p == "" {
			return nil
		}
		h := &tar.Header{
			Name: p, Mode: int64(n.Mode & fstree.ModePerm), Uid: int(n.Uid), Gid: int(n.Gid),
			ModTime: n.Mtime, AccessTime: n.Atime, ChangeTime: n.Ctime, Format: tar.FormatPAX,
		}
		if len(n.Xattrs) > 0 {
			h.PAXRecords = map[string]string{}
			for k, v := range n.Xattrs {
				h.PAXRecords["SCHILY.xattr."+k] = string(v)
			}
		}
		if prev, ok := first[n]; ok && !n.IsDir() {
			h.Typeflag, h.Linkname = tar.TypeLink, prev
			return tw.WriteHeader(h)
		}
		first[n] = p
		switch n.Type() {
		case fstree.ModeDir:
			h.Typeflag, h.Name = tar.TypeDir, p+"/"
		case fstree.ModeSymlink:
			h.Typeflag, h.Linkname = tar.TypeSymlink, n.Target
		case fstree.ModeChar, fstree.ModeBlock:
			h.Typeflag = tar.TypeChar
			if n.Type() == fstree.ModeBlock {
				h.Typeflag = tar.TypeBlock
			}
			h.Devmajor, h.Devminor = int64(n.Major), int64(n.Minor)
		case fstree.ModeFIFO:
			h.Typeflag = tar.TypeFifo
		case fstree.ModeSocket:
			return nil // tar cannot carry sockets
		case fstree.ModeRegular:
			h.Typeflag, h.Size = tar.TypeReg, n.Size()
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if n.Content == nil {
				return nil
			}
			r, err := n.Content.Open()
			if err != nil {
				return fmt.Errorf("/%s: %w", p, err)
			}
			defer r.Close()
			_, err = io.Copy(tw, r)
			return err
		}
		return tw.WriteHeader(h)
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}
