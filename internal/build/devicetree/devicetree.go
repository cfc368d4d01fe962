// Package devicetree reads, queries, edits and writes flattened device
// trees (.dtb). It knows nothing of boards: callers select nodes by path,
// alias or compatible and follow phandles through it.
package devicetree

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"

	"github.com/u-root/u-root/pkg/dt"
)

// maxSize bounds what Parse accepts: real DTBs are tens of KiB.
const maxSize = 16 << 20

// Node is one device tree node.
type Node = dt.Node

// Tree is a parsed device tree with its paths, parents and phandles
// indexed.
type Tree struct {
	fdt       *dt.FDT
	parent    map[*Node]*Node
	path      map[*Node]string
	byPath    map[string]*Node
	byPhandle map[uint32]*Node
	order     []*Node // depth first, as in the blob
}

// Parse reads a DTB.
func Parse(b []byte) (*Tree, error) {
	if len(b) > maxSize {
		return nil, fmt.Errorf("device tree is %d bytes, more than the %d a DTB can sensibly be", len(b), maxSize)
	}
	if len(b) < 40 || binary.BigEndian.Uint32(b) != dt.Magic {
		return nil, fmt.Errorf("not a device tree blob (no 0xd00dfeed magic)")
	}
	if total := binary.BigEndian.Uint32(b[4:]); int64(total) > int64(len(b)) {
		return nil, fmt.Errorf("device tree header says %d bytes, the file has %d", total, len(b))
	}
	f, err := read(b)
	if err != nil {
		return nil, err
	}
	t := &Tree{fdt: f}
	if err := t.index(); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *Tree) index() error {
	t.parent = map[*Node]*Node{}
	t.path = map[*Node]string{}
	t.byPath = map[string]*Node{}
	t.byPhandle = map[uint32]*Node{}
	t.order = nil
	var walk func(n *Node, p string, depth int) error
	walk = func(n *Node, p string, depth int) error {
		if depth > 64 {
			return fmt.Errorf("device tree: nodes nested deeper than 64 at %s", p)
		}
		t.path[n] = p
		t.byPath[p] = n
		t.order = append(t.order, n)
		for _, name := range []string{"phandle", "linux,phandle"} {
			if v, ok := t.Prop(n, name); ok && len(v) == 4 {
				ph := binary.BigEndian.Uint32(v)
				if prev, dup := t.byPhandle[ph]; dup && prev != n {
					return fmt.Errorf("device tree: phandle %#x on both %s and %s", ph, t.path[prev], p)
				}
				t.byPhandle[ph] = n
			}
		}
		for _, c := range n.Children {
			t.parent[c] = n
			cp := p + "/" + c.Name
			if p == "/" {
				cp = "/" + c.Name
			}
			if err := walk(c, cp, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(t.fdt.RootNode, "/", 0)
}

// Bytes writes the tree as a DTB. The same tree gives the same bytes.
func (t *Tree) Bytes() ([]byte, error) {
	var buf bytes.Buffer
	if _, err := t.fdt.Write(&buf); err != nil {
		return nil, fmt.Errorf("writing device tree: %w", err)
	}
	return buf.Bytes(), nil
}

// Root returns the root node.
func (t *Tree) Root() *Node { return t.fdt.RootNode }

// Nodes returns every node, depth first in blob order.
func (t *Tree) Nodes() []*Node { return t.order }

// Path returns a node's full path, e.g. "/soc/apb@d0000000/mmc@72000".
func (t *Tree) Path(n *Node) string { return t.path[n] }

// Parent returns a node's parent, nil for the root.
func (t *Tree) Parent(n *Node) *Node { return t.parent[n] }

// ByPath returns the node at a full path.
func (t *Tree) ByPath(p string) (*Node, bool) {
	n, ok := t.byPath[p]
	return n, ok
}

// ByPhandle returns the node carrying a phandle.
func (t *Tree) ByPhandle(ph uint32) (*Node, bool) {
	n, ok := t.byPhandle[ph]
	return n, ok
}

// Prop returns a property's raw value.
func (t *Tree) Prop(n *Node, name string) ([]byte, bool) {
	for _, p := range n.Properties {
		if p.Name == name {
			return p.Value, true
		}
	}
	return nil, false
}

// String returns a string property (the first string of a list).
func (t *Tree) String(n *Node, name string) (string, bool) {
	v, ok := t.Prop(n, name)
	if !ok {
		return "", false
	}
	s, _, _ := strings.Cut(string(v), "\x00")
	return s, true
}

// Strings returns a string-list property.
func (t *Tree) Strings(n *Node, name string) []string {
	v, ok := t.Prop(n, name)
	if !ok {
		return nil
	}
	var out []string
	for _, s := range strings.Split(strings.TrimSuffix(string(v), "\x00"), "\x00") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Cells returns a property as big-endian 32-bit cells.
func (t *Tree) Cells(n *Node, name string) ([]uint32, bool) {
	v, ok := t.Prop(n, name)
	if !ok || len(v)%4 != 0 {
		return nil, false
	}
	out := make([]uint32, len(v)/4)
	for i := range out {
		out[i] = binary.BigEndian.Uint32(v[4*i:])
	}
	return out, true
}

// U32 returns a one-cell property.
func (t *Tree) U32(n *Node, name string) (uint32, bool) {
	c, ok := t.Cells(n, name)
	if !ok || len(c) != 1 {
		return 0, false
	}
	return c[0], true
}

// Compatible returns a node's compatible strings, most specific first.
func (t *Tree) Compatible(n *Node) []string { return t.Strings(n, "compatible") }

// Enabled reports whether a node's status is "okay"/"ok" or absent.
func (t *Tree) Enabled(n *Node) bool {
	s, ok := t.String(n, "status")
	return !ok || s == "okay" || s == "ok"
}

// Aliases returns the /aliases table: alias name → path.
func (t *Tree) Aliases() map[string]string {
	out := map[string]string{}
	a, ok := t.byPath["/aliases"]
	if !ok {
		return out
	}
	for _, p := range a.Properties {
		s, _, _ := strings.Cut(string(p.Value), "\x00")
		out[p.Name] = s
	}
	return out
}

// Select finds the nodes a selector names:
//
//	/full/path          the node at that path
//	alias:NAME          the node an /aliases entry points at
//	compatible:STRING   every node whose compatible list holds STRING
//
// A selector that names nothing is an error, so board data that no
// longer fits a device tree is noticed.
func (t *Tree) Select(sel string) ([]*Node, error) {
	switch {
	case strings.HasPrefix(sel, "/"):
		if n, ok := t.byPath[sel]; ok {
			return []*Node{n}, nil
		}
		return nil, fmt.Errorf("no node %s in this device tree", sel)
	case strings.HasPrefix(sel, "alias:"):
		name := strings.TrimPrefix(sel, "alias:")
		p, ok := t.Aliases()[name]
		if !ok {
			keys := make([]string, 0)
			for k := range t.Aliases() {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			return nil, fmt.Errorf("no alias %q in this device tree (it has %s)", name, strings.Join(keys, ", "))
		}
		n, ok := t.byPath[p]
		if !ok {
			return nil, fmt.Errorf("alias %q points at %s, which is not in the tree", name, p)
		}
		return []*Node{n}, nil
	case strings.HasPrefix(sel, "compatible:"):
		c := strings.TrimPrefix(sel, "compatible:")
		var out []*Node
		for _, n := range t.order {
			for _, nc := range t.Compatible(n) {
				if nc == c {
					out = append(out, n)
					break
				}
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("no node is compatible with %q in this device tree", c)
		}
		return out, nil
	}
	return nil, fmt.Errorf("bad node selector %q (want /path, alias:NAME or compatible:STRING)", sel)
}

// ValidSelector checks a selector's syntax without a tree.
func ValidSelector(sel string) error {
	for _, p := range []string{"/", "alias:", "compatible:"} {
		if strings.HasPrefix(sel, p) && len(sel) > len(p) || sel == "/" {
			return nil
		}
	}
	return fmt.Errorf("bad node selector %q (want /path, alias:NAME or compatible:STRING)", sel)
}
