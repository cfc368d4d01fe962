package fat

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
)

// shortChars are the characters allowed in an 8.3 name besides A-Z and
// 0-9.
const shortChars = "!#$%&'()-@^_`{}~"

func validShort(c rune) bool {
	return c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(shortChars, c)
}

// checkLongName rejects names FAT cannot store as they are: characters
// Windows and Linux's vfat refuse, and trailing dots or spaces, which both
// strip (the file would come back under another name).
func checkLongName(name string) error {
	for _, c := range name {
		if c < 0x20 || strings.ContainsRune(`"*/:<>?\|`, c) {
			return fmt.Errorf("name %q has %q, which FAT cannot store", name, c)
		}
	}
	if strings.HasSuffix(name, ".") || strings.HasSuffix(name, " ") {
		return fmt.Errorf("name %q ends in a dot or space, which FAT drops", name)
	}
	if n := len(utf16.Encode([]rune(name))); n > 255 {
		return fmt.Errorf("name %q is %d UTF-16 units; FAT long names hold at most 255", name, n)
	}
	return nil
}

// exact83 returns name as a padded 11-byte short name when name already is
// a valid upper-case 8.3 name, so it needs no long-name entries.
func exact83(name string) (sn [11]byte, ok bool) {
	base, ext, hasDot := strings.Cut(name, ".")
	if len(base) < 1 || len(base) > 8 || len(ext) > 3 || (hasDot && ext == "") || strings.Contains(ext, ".") {
		return sn, false
	}
	for _, c := range base + ext {
		if !validShort(c) {
			return sn, false
		}
	}
	return pad83(base, ext), true
}

func pad83(base, ext string) (sn [11]byte) {
	copy(sn[:], "           ")
	copy(sn[:8], base)
	copy(sn[8:], ext)
	return sn
}

// basis makes the upper-case base and extension of a short name the way
// Windows does: drop spaces and leading dots, the extension is what
// follows the last dot, invalid characters become "_". lossy reports that
// more than case changed, which calls for a numeric tail.
func basis(name string) (base, ext string, lossy bool) {
	s := strings.TrimLeft(name, ".")
	if s != name {
		lossy = true
	}
	b, e := s, ""
	if i := strings.LastIndexByte(s, '.'); i >= 0 {
		b, e = s[:i], s[i+1:]
	}
	clean := func(part string, max int) string {
		var out []byte
		for _, c := range strings.ToUpper(part) {
			switch {
			case c == ' ' || c == '.':
				lossy = true
				continue
			case c < 0x80 && validShort(c):
				out = append(out, byte(c))
			default:
				out = append(out, '_')
				lossy = true
			}
		}
		if len(out) > max {
			out = out[:max]
			lossy = true
		}
		return string(out)
	}
	base, ext = clean(b, 8), clean(e, 3)
	if base == "" {
		base, lossy = "_", true
	}
	return base, ext, lossy
}

// namer hands out unique short names in one directory. Names are handed
// out in sorted order, after every exact 8.3 name has claimed its own, so
// the same directory always gets the same short names.
type namer struct {
	taken map[[11]byte]bool
	next  map[string]int // basis -> next tail number to try
}

func newNamer() *namer {
	return &namer{taken: map[[11]byte]bool{}, next: map[string]int{}}
}

func (n *namer) generate(name string) ([11]byte, error) {
	base, ext, lossy := basis(name)
	if !lossy {
		sn := pad83(base, ext)
		if !n.taken[sn] {
			n.taken[sn] = true
			return sn, nil
		}
	}
	key := base + "." + ext
	for i := max(n.next[key], 1); i <= 999999; i++ {
		tail := "~" + strconv.Itoa(i)
		b := base
		if len(b) > 8-len(tail) {
			b = b[:8-len(tail)]
		}
		sn := pad83(b+tail, ext)
		if !n.taken[sn] {
			n.taken[sn] = true
			n.next[key] = i + 1
			return sn, nil
		}
	}
	return [11]byte{}, fmt.Errorf("no free short name for %q", name)
}

// lfnChecksum is the checksum of the short name that every long-name entry
// carries (Microsoft FAT spec, ChkSum).
func lfnChecksum(sn [11]byte) byte {
	var sum byte
	for _, c := range sn {
		sum = (sum&1)<<7 + sum>>1 + c
	}
	return sum
}

// lfnOffsets are the byte offsets of the 13 UTF-16 units in an entry.
var lfnOffsets = [13]int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30}

func lfnSlots(name string) int {
	return (len(utf16.Encode([]rune(name))) + 12) / 13
}

// lfnEntries returns the long-name entries for name, in on-disk order
// (last part first), to be followed by the short entry.
func lfnEntries(name string, sn [11]byte) []byte {
	u := utf16.Encode([]rune(name))
	slots := (len(u) + 12) / 13
	sum := lfnChecksum(sn)
	out := make([]byte, 32*slots)
	for s := 1; s <= slots; s++ {
		e := out[32*(slots-s) : 32*(slots-s+1)]
		e[0] = byte(s)
		if s == slots {
			e[0] |= 0x40
		}
		e[11] = 0x0f
		e[13] = sum
		for k, off := range lfnOffsets {
			i := 13*(s-1) + k
			var v uint16
			switch {
			case i < len(u):
				v = u[i]
			case i == len(u):
				v = 0
			default:
				v = 0xffff
			}
			e[off], e[off+1] = byte(v), byte(v>>8)
		}
	}
	return out
}
