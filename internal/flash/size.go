package flash

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseSize reads a byte count: a number with an optional unit, decimal
// (KB, MB, GB, TB) or binary (K, M, G, T, KiB, MiB, GiB, TiB).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.TrimSpace(t[i:])
	}
	mult, ok := map[string]float64{
		"": 1, "b": 1,
		"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
		"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
		"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
		"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
	}[strings.ToLower(unit)]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q (use e.g. 64GiB, 64GB or 68719476736)", unit)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%q is not a size (use e.g. 64GiB, 64GB or 68719476736)", s)
	}
	return int64(v * mult), nil
}
