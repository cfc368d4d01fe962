// Package shquote quotes words for a POSIX shell: the remote commands
// ssh runs go through the remote user's shell as one string.
package shquote

import "strings"

// Quote makes s one shell word that stands for itself.
func Quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Join quotes each word and joins them with spaces.
func Join(words ...string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = Quote(w)
	}
	return strings.Join(q, " ")
}
