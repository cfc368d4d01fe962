#!/bin/bash
# Native btrfs writer vs `fakeroot mkfs.btrfs --rootdir --shrink` on the
# same ~200 MB, ~30k-entry tree, in the same run: wall time and image
# size (apparent and allocated), with ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${XDG_CACHE_HOME:-$HOME/.cache}/mkimage
tree=$cache/bench-btrfs-tree
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ ! -d "$tree" ]; then
	python3 bench/btrfs-tree.py "$tree.tmp" >&2 && mv "$tree.tmp" "$tree"
fi
go test -c -o "$work/btrfs.test" ./internal/build/btrfs
entries=$(find "$tree" | wc -l)
bytes=$(du -sb --apparent-size "$tree" | cut -f1)
# Warm the page cache so both read the tree from memory.
find "$tree" -type f -exec cat {} + >/dev/null

now() { date +%s.%N; }
t0=$(now)
BTRFS_BENCH_TREE=$tree BTRFS_BENCH_OUT=$work/native.img "$work/btrfs.test" -test.run '^$' -test.bench BenchmarkWriteHostDir -test.benchtime 1x >/dev/null
t1=$(now)
touch "$work/mkfs.img"
fakeroot mkfs.btrfs -q --rootdir "$tree" --shrink "$work/mkfs.img" >/dev/null 2>&1
t2=$(now)

sync
btrfs check --readonly "$work/native.img" >/dev/null 2>&1 && ncheck=clean || ncheck=ERRORS
nt=$(echo "$t1 - $t0" | bc); mt=$(echo "$t2 - $t1" | bc)
ns=$(stat -c %s "$work/native.img"); ms=$(stat -c %s "$work/mkfs.img")
na=$(( $(stat -c %b "$work/native.img") * 512 )); ma=$(( $(stat -c %b "$work/mkfs.img") * 512 ))
echo "tree: $entries entries, $bytes bytes ($tree)"
printf '%-22s %12s %14s %14s\n' "" "time (s)" "size (bytes)" "allocated"
printf '%-22s %12.2f %14d %14d\n' "native (btrfs check $ncheck)" "$nt" "$ns" "$na"
printf '%-22s %12.2f %14d %14d\n' "mkfs.btrfs --rootdir" "$mt" "$ms" "$ma"
printf '%-22s %12.2f %14.2f %14.2f\n' "native / mkfs" "$(echo "$nt / $mt" | bc -l)" "$(echo "$ns / $ms" | bc -l)" "$(echo "$na / $ma" | bc -l)"
