#!/bin/sh
# bench/flash.sh: mkimage flash against dd and bmaptool copy, same run.
#
# A 1 GiB image with ~210 MB of data in 200 scattered 1 MiB pieces (plus
# its .bmap from bmaptool create) is written to 1, 8 and 46 file targets:
#   mkimage flash        all targets at once, bmap, fsync, read-back verify
#   mkimage --no-verify  the same without the read-back
#   dd                   the whole image, one target after another (conv=fsync)
#   bmaptool copy        the mapped blocks, one target after another (fsyncs)
# Every tool syncs its targets before it ends, so wall times compare.
# Targets are files on one disk here, so the disk's bandwidth is shared;
# SD cards behind separate readers each bring their own.
#
# Usage: bench/flash.sh            (from the repository root)
#   TARGETS="1 8"  target counts (default "1 8 46")
#   BENCH_DIR=/dev/shm  where the image and targets go (default /tmp)
#   MKIMAGE=path   a built mkimage (default: go build ./cmd/mkimage)
# Disk use: the image (~210 MB) plus N x 210 MB for mkimage's run; dd
# and bmaptool targets are deleted as soon as each is written.
set -eu

TARGETS=${TARGETS:-"1 8 46"}
dir=$(mktemp -d "${BENCH_DIR:-/tmp}/flashbench.XXXXXX")
trap 'rm -rf "$dir"' EXIT INT TERM

if [ -z "${MKIMAGE:-}" ]; then
	go build -o "$dir/mkimage" ./cmd/mkimage
	MKIMAGE=$dir/mkimage
fi
for t in dd bmaptool; do
	command -v $t >/dev/null || { echo "bench/flash.sh: $t not found (Debian: coreutils, bmap-tools)" >&2; exit 1; }
done

img=$dir/node.img
truncate -s 1G "$img"
i=0
while [ $i -lt 200 ]; do
	dd if=/dev/urandom of="$img" bs=1M count=1 seek=$((i * 5 + 3)) conv=notrunc status=none
	i=$((i + 1))
done
bmaptool create -o "$dir/node.img.bmap" "$img" 2>/dev/null
mapped=$(sed -n 's/.*<MappedBlocksCount> *\([0-9]*\).*/\1/p' "$dir/node.img.bmap")
mapped=$((mapped * 4096))
size=$(stat -c %s "$img")

now() { date +%s.%N; }
row() { # tool targets bytes seconds
	echo "$1 $2 $3 $4" >>"$dir/rows"
}

for n in $TARGETS; do
	targets=""
	i=0
	while [ $i -lt "$n" ]; do targets="$targets $dir/t$i"; i=$((i + 1)); done

	for mode in verify no-verify; do
		flag=""
		[ $mode = no-verify ] && flag=--no-verify
		sync
		t0=$(now)
		# shellcheck disable=SC2086
		"$MKIMAGE" flash $flag "$img" $targets >/dev/null 2>"$dir/log" || { cat "$dir/log" >&2; exit 1; }
		t1=$(now)
		# shellcheck disable=SC2086
		rm -f $targets
		name=mkimage-flash
		[ $mode = no-verify ] && name=mkimage-no-verify
		row $name "$n" $((n * mapped)) "$(echo "$t1 - $t0" | bc)"
	done

	sync
	t0=$(now)
	for t in $targets; do
		dd if="$img" of="$t" bs=4M conv=fsync status=none
		rm -f "$t"
	done
	t1=$(now)
	row "dd-conv=fsync" "$n" $((n * size)) "$(echo "$t1 - $t0" | bc)"

	sync
	t0=$(now)
	for t in $targets; do
		bmaptool -q copy "$img" "$t"
		rm -f "$t"
	done
	t1=$(now)
	row "bmaptool-copy" "$n" $((n * mapped)) "$(echo "$t1 - $t0" | bc)"
done

echo "image: $size bytes, $mapped mapped; targets in ${BENCH_DIR:-/tmp}; $(nproc) CPUs"
awk '
	{ tool[NR] = $1; n[NR] = $2; bytes[NR] = $3; secs[NR] = $4
	  if (tool[NR] == "mkimage-flash") ref[$2] = $4 }
	END {
		printf "%-26s %7s %14s %9s %9s %12s\n", "tool", "targets", "bytes written", "wall s", "MB/s", "x mkimage"
		for (i = 1; i <= NR; i++)
			printf "%-26s %7d %14.0f %9.2f %9.1f %12.2f\n", tool[i], n[i], bytes[i], secs[i], bytes[i] / secs[i] / 1e6, secs[i] / ref[n[i]]
	}' "$dir/rows"
