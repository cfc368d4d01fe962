package cachedir

import "testing"

func TestRoot(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/x/cache")
	if Root() != "/x/cache/mkimage" || Dir("apt") != "/x/cache/mkimage/apt" {
		t.Errorf("Root %s, Dir %s", Root(), Dir("apt"))
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "/home/u")
	if Root() != "/home/u/.cache/mkimage" {
		t.Errorf("Root %s", Root())
	}
}
