package devicetree

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"

	"github.com/u-root/u-root/pkg/dt"
)

// Fixup changes properties of the nodes a selector names. Each change is
// exact: deleting a property that is not there, or changing a cell whose
// value is not the expected one, is an error, so a fix-up written for one
// device tree is never applied blindly to another.
type Fixup struct {
	Node string `toml:"node" json:"node"`
	// Why says what the fix-up repairs and where it comes from.
	Why string `toml:"why" json:"why"`
	// Set gives properties new values: a string, a list of strings, a
	// number (one 32-bit cell), a list of numbers, or true (an empty
	// property).
	Set map[string]any `toml:"set" json:"set,omitempty"`
	// Delete removes properties.
	Delete []string `toml:"delete" json:"delete,omitempty"`
	// Cell changes one 32-bit cell of a property (e.g. the flags of a
	// GPIO specifier, whose phandle differs between builds).
	Cell []CellEdit `toml:"cell" json:"cell,omitempty"`
}

// CellEdit sets cell Index of Property from From to To.
type CellEdit struct {
	Property string `toml:"property" json:"property"`
	Index    int    `toml:"index" json:"index"`
	From     uint32 `toml:"from" json:"from"`
	To       uint32 `toml:"to" json:"to"`
}

// Check validates a fix-up without a tree.
func (f Fixup) Check() error {
	if err := ValidSelector(f.Node); err != nil {
		return err
	}
	if f.Why == "" {
		return fmt.Errorf("fix-up of %s: why is empty (say what it repairs and where the fix comes from)", f.Node)
	}
	if len(f.Set)+len(f.Delete)+len(f.Cell) == 0 {
		return fmt.Errorf("fix-up of %s changes nothing", f.Node)
	}
	for name, v := range f.Set {
		if _, err := encode(v); err != nil {
			return fmt.Errorf("fix-up of %s: set %s: %w", f.Node, name, err)
		}
	}
	for _, c := range f.Cell {
		if c.Property == "" || c.Index < 0 {
			return fmt.Errorf("fix-up of %s: cell edit needs a property and an index >= 0", f.Node)
		}
	}
	return nil
}

// Apply makes the fix-ups on t, in order.
func (t *Tree) Apply(fixups []Fixup) error {
	for i, f := range fixups {
		if err := f.Check(); err != nil {
			return err
		}
		nodes, err := t.Select(f.Node)
		if err != nil {
			return fmt.Errorf("fix-up %d (%s): %w", i+1, f.Why, err)
		}
		for _, n := range nodes {
			if err := t.apply(n, f); err != nil {
				return fmt.Errorf("fix-up %d of %s: %w", i+1, t.Path(n), err)
			}
		}
	}
	return t.index()
}

func (t *Tree) apply(n *Node, f Fixup) error {
	for _, name := range f.Delete {
		if !deleteProp(n, name) {
			return fmt.Errorf("delete %s: the node has no such property", name)
		}
	}
	names := make([]string, 0, len(f.Set))
	for name := range f.Set {
		names = append(names, name)
	}
	sort.Strings(names) // map order must not change the bytes
	for _, name := range names {
		v, _ := encode(f.Set[name])
		setProp(n, name, v)
	}
	for _, c := range f.Cell {
		v, ok := t.Prop(n, c.Property)
		if !ok {
			return fmt.Errorf("cell %d of %s: the node has no such property", c.Index, c.Property)
		}
		if len(v)%4 != 0 || 4*c.Index+4 > len(v) {
			return fmt.Errorf("cell %d of %s: the property has %d bytes", c.Index, c.Property, len(v))
		}
		if got := binary.BigEndian.Uint32(v[4*c.Index:]); got != c.From {
			return fmt.Errorf("cell %d of %s is %#x, the fix-up expects %#x (a different device tree: review the fix-up)", c.Index, c.Property, got, c.From)
		}
		nv := append([]byte(nil), v...)
		binary.BigEndian.PutUint32(nv[4*c.Index:], c.To)
		setProp(n, c.Property, nv)
	}
	return nil
}

// setProp replaces a property's value in place, or appends it.
func setProp(n *Node, name string, v []byte) {
	for i := range n.Properties {
		if n.Properties[i].Name == name {
			n.Properties[i].Value = v
			return
		}
	}
	n.Properties = append(n.Properties, dt.Property{Name: name, Value: v})
}

// deleteProp removes a property keeping the others in order (dt's own
// RemoveProperty moves the last one into the gap).
func deleteProp(n *Node, name string) bool {
	for i := range n.Properties {
		if n.Properties[i].Name == name {
			n.Properties = append(n.Properties[:i], n.Properties[i+1:]...)
			return true
		}
	}
	return false
}

// encode turns a TOML/JSON value into property bytes.
func encode(v any) ([]byte, error) {
	cell := func(x any) ([]byte, error) {
		var n int64
		switch x := x.(type) {
		case int64:
			n = x
		case int:
			n = int64(x)
		case float64:
			if x != math.Trunc(x) {
				return nil, fmt.Errorf("%v is not a whole number", x)
			}
			n = int64(x)
		default:
			return nil, fmt.Errorf("unsupported value %v (%T)", x, x)
		}
		if n < 0 || n > math.MaxUint32 {
			return nil, fmt.Errorf("%d does not fit a 32-bit cell", n)
		}
		return binary.BigEndian.AppendUint32(nil, uint32(n)), nil
	}
	switch x := v.(type) {
	case bool:
		if !x {
			return nil, fmt.Errorf("false: delete the property instead")
		}
		return []byte{}, nil
	case string:
		return append([]byte(x), 0), nil
	case []string:
		var out []byte
		for _, s := range x {
			out = append(append(out, s...), 0)
		}
		return out, nil
	case []any:
		if len(x) == 0 {
			return nil, fmt.Errorf("empty list")
		}
		var out []byte
		_, strs := x[0].(string)
		for _, e := range x {
			if s, ok := e.(string); ok && strs {
				out = append(append(out, s...), 0)
				continue
			} else if strs {
				return nil, fmt.Errorf("a list mixes strings and numbers")
			}
			b, err := cell(e)
			if err != nil {
				return nil, err
			}
			out = append(out, b...)
		}
		return out, nil
	}
	return cell(v)
}
