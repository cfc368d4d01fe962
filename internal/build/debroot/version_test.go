package debroot

import "testing"

func TestCompareVersions(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"1.0", "1.0", 0},
		{"1.0", "1.1", -1},
		{"1.10", "1.9", 1},
		{"1.0~rc1", "1.0", -1},
		{"1.0", "1.0+b1", -1},
		{"1:1.0", "2.0", 1},
		{"2.36-9+deb12u4", "2.36-9+deb12u14", -1},
		{"1.0-1", "1.0-1~bpo", 1},
		{"1.0a", "1.0", 1},
		{"1.0.", "1.0", 1},
		{"0:1.0", "1.0", 0},
		{"252.39-1~deb12u2", "252.39-1", -1},
	} {
		got := CompareVersions(c.a, c.b)
		if sign(got) != c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want sign %d", c.a, c.b, got, c.want)
		}
		if back := CompareVersions(c.b, c.a); sign(back) != -c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want sign %d", c.b, c.a, back, -c.want)
		}
	}
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}
