// Package bytesize reads the byte sizes users type (board files, --boot-size,
// --max-size): one rule for every flag and file. Format writes sizes for
// people to read.
package bytesize

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// units: K, M, G, T and KiB... are binary, as dd and the kernel use them;
// KB, MB, GB, TB are decimal, as card vendors print them.
var units = map[string]float64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
}

// Parse reads a number with an optional unit ("4MiB", "256M", "1.5G",
// "64GB", "10 MiB", "4096") as a whole number of bytes.
func Parse(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.TrimSpace(t[i:])
	}
	mult, ok := units[strings.ToLower(unit)]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit %q (use e.g. 4MiB, 256M, 64GB or 4096)", s, unit)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) {
		return 0, fmt.Errorf("size %q is not a size (use e.g. 4MiB, 256M, 64GB or 4096)", s)
	}
	n := v * mult
	if n >= 1<<62 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	if n != math.Trunc(n) {
		return 0, fmt.Errorf("size %q is not a whole number of bytes", s)
	}
	return int64(n), nil
}

// Format writes a byte count for people, in the largest binary unit it
// reaches: "512 B", "4.0 KiB", "356 MiB", "1.4 GiB" (one decimal below
// ten, so every figure has two or three digits).
func Format(n int64) string {
	if n < 1<<10 {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n)
	unit := ""
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		v /= 1 << 10
		unit = u
		if v < 1<<10 {
			break
		}
	}
	if v < 10 {
		return fmt.Sprintf("%.1f %s", v, unit)
	}
	return fmt.Sprintf("%.0f %s", v, unit)
}
