package shquote

import (
	"os/exec"
	"testing"
)

// What sh makes of Join's string is the words given.
func TestJoin(t *testing.T) {
	words := []string{"plain", "two words", "it's", `"$HOME" $(id) ; rm -rf / \`, "", "*"}
	out, err := exec.Command("sh", "-c", `for w in `+Join(words...)+`; do printf '%s\0' "$w"; done`).Output()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(out) > 0 {
		i := 0
		for out[i] != 0 {
			i++
		}
		got = append(got, string(out[:i]))
		out = out[i+1:]
	}
	if len(got) != len(words) {
		t.Fatalf("sh read %q, want %q", got, words)
	}
	for i := range words {
		if got[i] != words[i] {
			t.Errorf("word %d: sh read %q, want %q", i, got[i], words[i])
		}
	}
}
