#!/bin/bash
# Benchmarks for the initramfs (printed, not asserted):
#   - compressed size; build time cold (empty initramfs cache, warm Go
#     cache) and cached;
#   - time from QEMU start to the root's init with nodeinit's initramfs,
#     next to a hand-made busybox initramfs (insmod in the same order,
#     mount, switch_root) booting the same kernel and disk in the same run.
# Needs: go, qemu-system-aarch64, mkfs.btrfs, cpio, xz, dpkg-deb, and the
# Debian arm64 kernel and busybox-static .debs in ~/.cache/mkimage/apt/debs.
# Run from the source tree: bash bench/initramfs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/mkimage
KDEB=$(ls "$CACHE"/apt/debs/linux-image-*-arm64_*_arm64.deb | sort | tail -1)
BDEB=$(ls "$CACHE"/apt/debs/busybox-static_*_arm64.deb | sort | tail -1)
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
now() { date +%s.%N; }
go build -o "$W/mkimage" ./cmd/mkimage
dpkg-deb -x "$KDEB" "$W/k"; dpkg-deb -x "$BDEB" "$W/bb"
KVER=$(ls "$W/k/lib/modules"); IMAGE="$W/k/boot/vmlinuz-$KVER"

t0=$(now); "$W/mkimage" initramfs -q --board qemu-virt --kernel "$KDEB" --cache "$W/cold" -o "$W/nodeinit.cpio.xz"; t1=$(now)
"$W/mkimage" initramfs -q --board qemu-virt --kernel "$KDEB" --cache "$W/cold" -o "$W/nodeinit.cpio.xz"; t2=$(now)
printf 'initramfs (nodeinit, u-root busybox, %s modules): %d bytes\n' "$(xz -dc "$W/nodeinit.cpio.xz" | cpio -i --quiet --to-stdout etc/nodeinit/modules | wc -l)" "$(stat -c %s "$W/nodeinit.cpio.xz")"
printf 'build cold (empty initramfs cache, warm GOCACHE): %.1f s\n' "$(echo "$t1 - $t0" | bc)"
printf 'build cached (mkimage initramfs, most of it reading the .deb): %.2f s\n' "$(echo "$t2 - $t1" | bc)"

# The hand-made busybox initramfs: same modules, same order.
R="$W/bbroot"; mkdir -p "$R"/{bin,dev,proc,sys,newroot}
cp "$W/bb/bin/busybox" "$R/bin/busybox"
(cd "$R" && xz -dc "$W/nodeinit.cpio.xz" | cpio -id --quiet 'lib/modules/*' etc/nodeinit/modules)
cat > "$R/init" <<'EOS'
#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc; $B mount -t sysfs sys /sys; $B mount -t devtmpfs dev /dev
for m in $($B cat /etc/nodeinit/modules); do $B insmod $m; done
for i in $($B seq 300); do $B findfs LABEL=root >/dev/null 2>&1 && break; $B usleep 100000; done
$B mount -t btrfs $($B findfs LABEL=root) /newroot || exec $B sh
$B mount --move /dev /newroot/dev; $B mount --move /proc /newroot/proc; $B mount --move /sys /newroot/sys
exec $B switch_root /newroot /sbin/init
EOS
chmod +x "$R/init"
(cd "$R" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | xz --check=crc32 > "$W/busybox.cpio.xz"
printf 'initramfs (hand-made busybox, same modules): %d bytes\n' "$(stat -c %s "$W/busybox.cpio.xz")"

# The root: busybox as /sbin/init printing a marker.
D="$W/root"; mkdir -p "$D"/{bin,sbin,dev,proc,sys,run}; cp "$W/bb/bin/busybox" "$D/bin/"
printf '#!/bin/busybox sh\n/bin/busybox echo ROOT-INIT-REACHED\n/bin/busybox poweroff -f\n' > "$D/sbin/init"; chmod +x "$D/sbin/init"
truncate -s 128M "$W/root.img"; mkfs.btrfs -q -L root --rootdir "$D" "$W/root.img" >/dev/null 2>&1

boot() { # initrd → seconds from QEMU start to the marker
	local t0 t1; t0=$(now)
	timeout 180 qemu-system-aarch64 -M virt -cpu cortex-a53 -m 1024 -nographic -no-reboot -monitor none \
		-kernel "$IMAGE" -initrd "$1" -append "console=ttyAMA0 panic=-1 root=LABEL=root" \
		-drive if=none,file="$W/root.img",format=raw,id=hd0 -device virtio-blk-device,drive=hd0 </dev/null |
		grep -a -m1 -q ROOT-INIT-REACHED && t1=$(now) || { echo "boot with $1 failed" >&2; return 1; }
	echo "$t1 - $t0" | bc
}
for i in 1 2; do
	printf 'QEMU start to root init, nodeinit initramfs (run %d): %.2f s\n' $i "$(boot "$W/nodeinit.cpio.xz")"
	printf 'QEMU start to root init, busybox initramfs  (run %d): %.2f s\n' $i "$(boot "$W/busybox.cpio.xz")"
done
