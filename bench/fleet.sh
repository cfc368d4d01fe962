#!/usr/bin/env bash
# Benchmark (issue 15): a fleet pulling one update at once, from an OCI
# registry and from `mkimage serve`, side by side in the same run.
#
# BenchmarkFleet (bench/fleet_test.go) writes two signed bundles with
# internal/build/bundle (no QEMU, pseudo-random content that does not
# compress): v1 (24 MiB kernel, 8 MiB initramfs, 64 KiB device tree,
# 40 MiB root) and v2, which changes one 1 MiB library and a text file of
# the root and the initramfs, so v2 carries root.full and root.from-<v1>.
# It starts Debian's docker-registry on loopback (registrytest) and pushes
# both with bundle.Push, and serves the same bundle directories with
# netserve.HTTP, what `mkimage serve` answers HTTP with. Then N nodes at
# once (goroutines, each with its own connections and directory) do what
# internal/node/apply does before it receives: fetch and check the signed
# manifest (registry.Client.Open over the registry; manifest.json,
# manifest.sig and update.Verify over HTTP) and download each payload
# they need with netfetch.Fetcher.Download (size and sha256 checked,
# fsynced), first as nodes holding nothing (root.full and the boot files),
# then as nodes holding v1 (root.from-v1 and the changed initramfs). Both
# servers sit behind the same counting TCP proxy: "MB transferred" is what
# the server put on the wire (HTTP headers included), "requests" what the
# nodes sent. Prints one table; asserts nothing.
#
# Usage: bench/fleet.sh                (from anywhere in the checkout)
#   BENCH_NODES=N       nodes at once (default 46: the fleet)
#   BENCH_NODE_DIR=DIR  where the nodes write (default /dev/shm where it
#                       exists, so the bench host's disk does not pace
#                       both servers alike)
# Needs go and docker-registry (Debian package docker-registry). The
# bundles, the registry's storage and the nodes' files live in temporary
# directories removed on exit, and the registry is stopped (t.Cleanup).
set -euo pipefail
cd "$(dirname "$0")/.."

for t in go docker-registry; do
	command -v $t >/dev/null || {
		echo "bench/fleet.sh: $t not found (Debian: golang, docker-registry)" >&2
		exit 1
	}
done
go test -count=1 -run '^$' -bench '^BenchmarkFleet$' -benchtime 1x -timeout 20m ./bench/ |
	grep -v '^\(goos\|goarch\|pkg\|cpu\|PASS\|ok\|BenchmarkFleet\|--- BENCH\)'
