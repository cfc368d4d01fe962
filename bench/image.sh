#!/usr/bin/env bash
# Benchmark (issue 2): a qemu-virt image with a ~200 MB root tree built by
# mkimage, against the same layout made by hand with the usual tools
# (mkfs.vfat + mcopy + fakeroot mkfs.btrfs --rootdir + sfdisk + dd), in the
# same run. Prints a table; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/mkimage-bench-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
go build -o "$work/mkimage" ./cmd/mkimage

# ~200 MB root: 2000 files of 64..128 KiB of random data in 40 dirs,
# plus 8000 small files.
root="$work/root"
python3 - "$root" <<'PY'
import os, sys, random
r = random.Random(1); root = sys.argv[1]
for d in range(40):
    dd = os.path.join(root, "usr/share/d%02d" % d); os.makedirs(dd)
    for f in range(50):
        with open(os.path.join(dd, "f%03d" % f), "wb") as fh: fh.write(os.urandom(r.randint(64, 128) * 1024))
    for f in range(200):
        with open(os.path.join(dd, "s%03d" % f), "wb") as fh: fh.write(os.urandom(r.randint(1, 3000)))
PY
mb=$(du -sm "$root" | cut -f1)

# Warm the caches (kernel, busybox, initramfs) so both sides pay only the
# image writing.
"$work/mkimage" --board qemu-virt --rootfs "$root" -o "$work/warm.img" -q >/dev/null
rm -f "$work"/warm.img*

t0=$(date +%s.%N)
"$work/mkimage" --board qemu-virt --rootfs "$root" -o "$work/ours.img" -q >/dev/null
ours=$(echo "$(date +%s.%N) - $t0" | bc)

# The by-hand build gets exactly what ours holds: the boot files and the
# whole root (with the kernel modules and busybox) read back from our image.
rootsize=$(python3 -c "import json;print(json.load(open('$work/ours.img.manifest.json'))['root']['size'])")
boot="$work/boot"; full="$work/fullroot"; mkdir -p "$boot" "$full"
mcopy -n -s -i "$work/ours.img@@4M" ::/ "$boot"
dd if="$work/ours.img" of="$work/p2" bs=4M skip=65 status=none
btrfs restore -m -S -x "$work/p2" "$full" >/dev/null
rm -f "$work/p2"
root="$full"; mb=$(du -sm "$root" | cut -f1)

t1=$(date +%s.%N)
# By hand: the same partitions and content.
img="$work/hand.img"; size=$(( (4+256)*1024*1024 + rootsize ))
truncate -s "$size" "$img"
printf 'label: dos\nstart=8192, size=524288, type=c, bootable\nstart=532480, type=83\n' | sfdisk -q "$img"
truncate -s 256M "$work/boot.fat"
mkfs.vfat -F 32 -n BOOT "$work/boot.fat" >/dev/null
mcopy -s -i "$work/boot.fat" "$boot"/* ::/
truncate -s "$rootsize" "$work/root.btrfs"
fakeroot mkfs.btrfs -q -f -L root --rootdir "$root" "$work/root.btrfs"
dd if="$work/boot.fat" of="$img" bs=4M seek=1 conv=notrunc,sparse status=none
dd if="$work/root.btrfs" of="$img" bs=4M seek=65 conv=notrunc,sparse status=none
sync "$img"
t2=$(date +%s.%N)

hand=$(echo "$t2 - $t1" | bc)
printf '\n%-34s %10s %12s\n' "qemu-virt image, ${mb} MB root" "seconds" "image bytes"
printf '%-34s %10.2f %12s\n' "mkimage (native btrfs writer)" "$ours" "$(du -B1 "$work/ours.img" | cut -f1)"
printf '%-34s %10.2f %12s\n' "by hand (mkfs.vfat+mcopy+mkfs.btrfs+sfdisk+dd)" "$hand" "$(du -B1 "$img" | cut -f1)"
printf '%-34s %10.2f\n' "ratio by-hand / mkimage" "$(echo "$hand / $ours" | bc -l)"
