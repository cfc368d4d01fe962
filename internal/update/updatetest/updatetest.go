// Package updatetest gives tests the keys they sign with: fixed, made
// from a seed, so every run signs with the same keys.
package updatetest

import (
	"bytes"
	"crypto/ed25519"
	"fmt"

	"github.com/mkimage/mkimage/internal/update"
)

// Key is the signing key of seed, with the comment "key SEED" (errors
// name a key by its comment).
func Key(seed byte) update.PrivateKey {
	return update.PrivateKey{Key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)), Comment: fmt.Sprintf("key %d", seed)}
}
