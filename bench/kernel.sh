#!/bin/sh
# Kernel build benchmark: for each board (default qemu-virt), a cold build
# (empty build cache; the unpacked source is shared with the user cache)
# and an unchanged rebuild (served from the cache), with the Image size.
#
#   bench/kernel.sh [board...]        env: SRC (kernel tarball), JOBS
set -eu
cd "$(dirname "$0")/.."
SRC=${SRC:-/usr/src/linux-source-6.1.tar.xz}
JOBS=${JOBS:-$(nproc)}
boards=${*:-qemu-virt}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/mkimage" ./cmd/mkimage

user_cache=${XDG_CACHE_HOME:-$HOME/.cache}/mkimage/kernel
mkdir -p "$user_cache/src" "$work/cache/mkimage/kernel"
ln -s "$user_cache/src" "$work/cache/mkimage/kernel/src"

now() { date +%s.%N; }
printf '%-14s %-10s %10s %12s %10s\n' board build seconds Image_bytes modules
for b in $boards; do
	for run in cold cached; do
		t0=$(now)
		XDG_CACHE_HOME=$work/cache "$work/mkimage" kernel --board "$b" --src "$SRC" \
			-o "$work/out-$b" --jobs "$JOBS" 2>"$work/$b-$run.log" ||
			{ tail -20 "$work/$b-$run.log" >&2; exit 1; }
		t1=$(now)
		size=$(stat -c %s "$work/out-$b/Image")
		mods=$(find "$work/out-$b/lib/modules" -name '*.ko' | wc -l)
		printf '%-14s %-10s %10.1f %12d %10d\n' "$b" "$run" "$(echo "$t1 - $t0" | bc)" "$size" "$mods"
	done
done
echo "machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), make -j$JOBS, $("${CROSS:-aarch64-linux-gnu-}gcc" --version | head -1)"
