package devicetree

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/u-root/u-root/pkg/dt"
)

// read parses a DTB into u-root's tree types. It is written for hostile
// input: every size and offset is checked against the blob before use,
// so a header or property that claims gigabytes is refused, not
// allocated (u-root's own reader allocates what the header says).
func read(b []byte) (*dt.FDT, error) {
	be := binary.BigEndian
	var h dt.Header
	if len(b) < 40 {
		return nil, fmt.Errorf("device tree: %d bytes is shorter than its header", len(b))
	}
	fields := []*uint32{&h.Magic, &h.TotalSize, &h.OffDtStruct, &h.OffDtStrings, &h.OffMemRsvmap,
		&h.Version, &h.LastCompVersion, &h.BootCpuidPhys, &h.SizeDtStrings, &h.SizeDtStruct}
	for i, f := range fields {
		*f = be.Uint32(b[4*i:])
	}
	if h.Version < 16 || h.LastCompVersion > 17 {
		return nil, fmt.Errorf("device tree version %d (last compatible %d): want 16 or 17", h.Version, h.LastCompVersion)
	}
	total := uint64(len(b))
	within := func(off, size uint32, what string) error {
		if uint64(off)+uint64(size) > total {
			return fmt.Errorf("device tree: %s at %d+%d runs past the %d-byte blob", what, off, size, total)
		}
		return nil
	}
	if err := within(h.OffDtStruct, h.SizeDtStruct, "structure block"); err != nil {
		return nil, err
	}
	if err := within(h.OffDtStrings, h.SizeDtStrings, "strings block"); err != nil {
		return nil, err
	}
	f := &dt.FDT{Header: h}
	for off := uint64(h.OffMemRsvmap); ; off += 16 {
		if off < 40 || off+16 > total {
			return nil, fmt.Errorf("device tree: memory reservation block at %d runs past the blob", h.OffMemRsvmap)
		}
		e := dt.ReserveEntry{Address: be.Uint64(b[off:]), Size: be.Uint64(b[off+8:])}
		if e.Address == 0 && e.Size == 0 {
			break
		}
		f.ReserveEntries = append(f.ReserveEntries, e)
	}
	strs := b[h.OffDtStrings : h.OffDtStrings+h.SizeDtStrings]
	s := b[h.OffDtStruct : h.OffDtStruct+h.SizeDtStruct]
	var stack []*dt.Node
	for p := 0; ; {
		if p+4 > len(s) {
			return nil, fmt.Errorf("device tree: structure block ends without FDT_END")
		}
		tok := be.Uint32(s[p:])
		p += 4
		switch tok {
		case 1: // FDT_BEGIN_NODE
			end := bytes.IndexByte(s[p:], 0)
			if end < 0 {
				return nil, fmt.Errorf("device tree: node name at %d has no end", p)
			}
			n := &dt.Node{Name: string(s[p : p+end])}
			p = align4(p + end + 1)
			if len(stack) == 0 {
				if f.RootNode != nil {
					return nil, fmt.Errorf("device tree: a second root node")
				}
				f.RootNode = n
			} else {
				parent := stack[len(stack)-1]
				parent.Children = append(parent.Children, n)
			}
			if len(stack) >= 64 {
				return nil, fmt.Errorf("device tree: nodes nested deeper than 64")
			}
			stack = append(stack, n)
		case 2: // FDT_END_NODE
			if len(stack) == 0 {
				return nil, fmt.Errorf("device tree: unbalanced FDT_END_NODE")
			}
			stack = stack[:len(stack)-1]
		case 3: // FDT_PROP
			if p+8 > len(s) {
				return nil, fmt.Errorf("device tree: property header past the structure block")
			}
			n, nameoff := be.Uint32(s[p:]), be.Uint32(s[p+4:])
			p += 8
			if uint64(p)+uint64(n) > uint64(len(s)) {
				return nil, fmt.Errorf("device tree: property of %d bytes runs past the structure block", n)
			}
			if nameoff >= uint32(len(strs)) {
				return nil, fmt.Errorf("device tree: property name offset %d outside the strings block", nameoff)
			}
			end := bytes.IndexByte(strs[nameoff:], 0)
			if end < 0 {
				return nil, fmt.Errorf("device tree: property name at %d has no end", nameoff)
			}
			if len(stack) == 0 {
				return nil, fmt.Errorf("device tree: property outside a node")
			}
			node := stack[len(stack)-1]
			node.Properties = append(node.Properties, dt.Property{
				Name:  string(strs[nameoff : nameoff+uint32(end)]),
				Value: append([]byte(nil), s[p:p+int(n)]...),
			})
			p = align4(p + int(n))
		case 4: // FDT_NOP
		case 9: // FDT_END
			if len(stack) != 0 || f.RootNode == nil {
				return nil, fmt.Errorf("device tree: FDT_END with %d nodes open", len(stack))
			}
			return f, nil
		default:
			return nil, fmt.Errorf("device tree: unknown token %#x at %d", tok, p-4)
		}
	}
}

func align4(p int) int { return (p + 3) &^ 3 }
