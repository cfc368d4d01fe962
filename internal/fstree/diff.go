package fstree

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"path"
	"slices"
	"sort"
	"strings"
	"time"
)

// DiffOptions says what Diff may ignore. Atime and ctime are the usual
// ones: a kernel sets ctime when it writes an inode and may touch atime
// when a file is read back.
type DiffOptions struct {
	IgnoreAtime bool
	IgnoreCtime bool
	// IgnoreRoot skips the root directory's own owner, mode, times and
	// xattrs (a mount point's are the filesystem's, not the tree's).
	IgnoreRoot bool
}

// Diff compares two trees fully and returns one line per difference,
// in path order: "/etc/passwd: mode 0644 (a) != 0600 (b)". Compared are
// names, types, permission bits, owners, times (to the nanosecond),
// xattrs, symlink targets, device numbers, file content and hard-link
// structure (which names share an inode). An empty result means equal.
// The error reports content that could not be read.
func Diff(a, b *Tree, opt DiffOptions) ([]string, error) {
	d := differ{opt: opt, linksA: linkGroups(a), linksB: linkGroups(b), same: map[[2]*Inode]bool{}}
	if err := d.node("", a.Root, b.Root); err != nil {
		return d.out, err
	}
	return d.out, nil
}

type differ struct {
	opt            DiffOptions
	out            []string
	linksA, linksB map[*Inode][]string
	same           map[[2]*Inode]bool // pairs already compared
}

func (d *differ) add(p, what string, va, vb any) {
	d.out = append(d.out, fmt.Sprintf("/%s: %s %v (a) != %v (b)", p, what, va, vb))
}

func (d *differ) node(p string, a, b *Inode) error {
	if a.Type() != b.Type() {
		d.add(p, "type", TypeName(a.Mode), TypeName(b.Mode))
		return nil
	}
	pair := [2]*Inode{a, b}
	if !a.IsDir() {
		if la, lb := d.linksA[a], d.linksB[b]; !slices.Equal(la, lb) {
			d.add(p, "hard links", "["+strings.Join(la, " ")+"]", "["+strings.Join(lb, " ")+"]")
		}
		if d.same[pair] {
			return nil // a further name of a pair already compared
		}
		d.same[pair] = true
	}
	if p != "" || !d.opt.IgnoreRoot {
		d.attrs(p, a, b)
	}
	switch a.Type() {
	case ModeSymlink:
		if a.Target != b.Target {
			d.add(p, "symlink target", fmt.Sprintf("%q", a.Target), fmt.Sprintf("%q", b.Target))
		}
	case ModeChar, ModeBlock:
		if a.Major != b.Major || a.Minor != b.Minor {
			d.add(p, "device", fmt.Sprintf("%d:%d", a.Major, a.Minor), fmt.Sprintf("%d:%d", b.Major, b.Minor))
		}
	case ModeRegular:
		if err := d.content(p, a, b); err != nil {
			return err
		}
	case ModeDir:
		names := map[string]bool{}
		for n := range a.Children {
			names[n] = true
		}
		for n := range b.Children {
			names[n] = true
		}
		sorted := make([]string, 0, len(names))
		for n := range names {
			sorted = append(sorted, n)
		}
		sort.Strings(sorted)
		for _, n := range sorted {
			ca, oka := a.Children[n]
			cb, okb := b.Children[n]
			cp := path.Join(p, n)
			switch {
			case !okb:
				d.out = append(d.out, fmt.Sprintf("/%s: only in a (%s)", cp, TypeName(ca.Mode)))
			case !oka:
				d.out = append(d.out, fmt.Sprintf("/%s: only in b (%s)", cp, TypeName(cb.Mode)))
			default:
				if err := d.node(cp, ca, cb); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (d *differ) attrs(p string, a, b *Inode) {
	if a.Mode&ModePerm != b.Mode&ModePerm {
		d.add(p, "mode", fmt.Sprintf("%04o", a.Mode&ModePerm), fmt.Sprintf("%04o", b.Mode&ModePerm))
	}
	if a.Uid != b.Uid {
		d.add(p, "uid", a.Uid, b.Uid)
	}
	if a.Gid != b.Gid {
		d.add(p, "gid", a.Gid, b.Gid)
	}
	times := []struct {
		name   string
		ta, tb time.Time
		skip   bool
	}{
		{"mtime", a.Mtime, b.Mtime, false},
		{"atime", a.Atime, b.Atime, d.opt.IgnoreAtime},
		{"ctime", a.Ctime, b.Ctime, d.opt.IgnoreCtime},
	}
	for _, tm := range times {
		if !tm.skip && !tm.ta.Equal(tm.tb) {
			d.add(p, tm.name, tm.ta.UTC().Format(time.RFC3339Nano), tm.tb.UTC().Format(time.RFC3339Nano))
		}
	}
	keys := map[string]bool{}
	for k := range a.Xattrs {
		keys[k] = true
	}
	for k := range b.Xattrs {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		va, oka := a.Xattrs[k]
		vb, okb := b.Xattrs[k]
		switch {
		case !okb:
			d.out = append(d.out, fmt.Sprintf("/%s: xattr %s only in a", p, k))
		case !oka:
			d.out = append(d.out, fmt.Sprintf("/%s: xattr %s only in b", p, k))
		case !bytes.Equal(va, vb):
			d.add(p, "xattr "+k, fmt.Sprintf("%q", va), fmt.Sprintf("%q", vb))
		}
	}
}

func (d *differ) content(p string, a, b *Inode) error {
	if sa, sb := a.Size(), b.Size(); sa != sb {
		d.add(p, "size", sa, sb)
		return nil
	}
	if a.Size() == 0 {
		return nil
	}
	ra, err := a.Content.Open()
	if err != nil {
		return fmt.Errorf("/%s: a: %w", p, err)
	}
	defer ra.Close()
	rb, err := b.Content.Open()
	if err != nil {
		return fmt.Errorf("/%s: b: %w", p, err)
	}
	defer rb.Close()
	off, err := firstDifference(bufio.NewReaderSize(ra, 1<<16), bufio.NewReaderSize(rb, 1<<16))
	if err != nil {
		return fmt.Errorf("/%s: %w", p, err)
	}
	if off >= 0 {
		d.out = append(d.out, fmt.Sprintf("/%s: content differs from byte %d", p, off))
	}
	return nil
}

// firstDifference returns the offset of the first differing byte, or -1.
func firstDifference(a, b io.Reader) (int64, error) {
	bufA := make([]byte, 1<<16)
	bufB := make([]byte, 1<<16)
	var off int64
	for {
		na, errA := io.ReadFull(a, bufA)
		nb, errB := io.ReadFull(b, bufB)
		n := min(na, nb)
		for i := 0; i < n; i++ {
			if bufA[i] != bufB[i] {
				return off + int64(i), nil
			}
		}
		if na != nb {
			return off + int64(n), nil
		}
		off += int64(n)
		endA := errA == io.EOF || errA == io.ErrUnexpectedEOF
		endB := errB == io.EOF || errB == io.ErrUnexpectedEOF
		if errA != nil && !endA {
			return -1, fmt.Errorf("a: %w", errA)
		}
		if errB != nil && !endB {
			return -1, fmt.Errorf("b: %w", errB)
		}
		if endA || endB {
			return -1, nil
		}
	}
}

// linkGroups maps every non-directory inode reachable under more than one
// name to its sorted names.
func linkGroups(t *Tree) map[*Inode][]string {
	names := map[*Inode][]string{}
	t.Walk(func(p string, n *Inode) error {
		if !n.IsDir() {
			names[n] = append(names[n], "/"+p)
		}
		return nil
	})
	for n, ps := range names {
		if len(ps) < 2 {
			delete(names, n)
		}
	}
	return names
}
