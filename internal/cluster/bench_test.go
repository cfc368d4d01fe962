package cluster

import (
	"os"
	"testing"
)

func BenchmarkParseSeed(b *testing.B) {
	data, err := os.ReadFile("../../examples/seed-cluster.toml")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Parse("seed.toml", data); err != nil {
			b.Fatal(err)
		}
	}
}
