#!/usr/bin/env bash
# Benchmark (issue 7): the Debian arm64 root (--rootfs debian) against the
# busybox minimal root, both warm-cached (packages, kernel, initramfs
# already fetched), then the Debian image's first boot in QEMU (TCG, 2
# vCPUs, 2 GiB): how long the first-boot hook takes to configure every
# package. Prints a table; asserts nothing.
#   bench/debian.sh            # build times, sizes, package count, first boot
#   NOBOOT=1 bench/debian.sh   # builds only
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/mkimage-bench-debian.XXXXXX)
trap 'rm -rf "$work"' EXIT
go build -o "$work/mkimage" ./cmd/mkimage
mk="$work/mkimage"

# Warm every cache first.
"$mk" --board qemu-virt --rootfs debian -o "$work/warm.img" -q >/dev/null
"$mk" --board qemu-virt --rootfs minimal -o "$work/warm.img" -q >/dev/null
rm -f "$work"/warm.img*

secs() { local s=$(date +%s.%N); "$@" >/dev/null; echo "$(date +%s.%N) - $s" | bc; }
t_min=$(secs "$mk" --board qemu-virt --rootfs minimal -o "$work/min.img" -q)
t_deb=$(secs "$mk" --board qemu-virt --rootfs debian --config examples/qemu-cluster.toml -o "$work/deb.img" -q)

mapped() { python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m.get("mapped_bytes") or "")' "$1.manifest.json" 2>/dev/null || true; }
alloc() { du -m "$1" | cut -f1; }
pkgs=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(sum(1 for i in m.get("inputs",[]) if i.get("kind")=="package" and "debian root" in i.get("note","")))' "$work/deb.img.manifest.json")
debs_mb=$(python3 -c 'import json,sys,os; m=json.load(open(sys.argv[1])); print(round(sum(os.path.getsize(i["path"]) for i in m.get("inputs",[]) if "debian root" in i.get("note",""))/1e6))' "$work/deb.img.manifest.json")

boot="-"
if [ -z "${NOBOOT:-}" ]; then
	go run ./bench/debianboot "$work/deb.img" >"$work/boot.txt" 2>&1 || true
	boot=$(grep -o 'dpkg-configure: [0-9]* of [0-9]* packages installed ok in [0-9]* s' "$work/boot.txt" | tail -1 | sed 's/dpkg-configure: //')
	[ -n "$boot" ] || { boot="failed (see below)"; tail -20 "$work/boot.txt"; }
	login=$(grep -o 'to [a-z -]*: [0-9hms]*' "$work/boot.txt" | tr '\n' ';' || true)
fi

printf '%-34s %12s %12s\n' "" "minimal" "debian"
printf '%-34s %12s %12s\n' "build, warm cache (s)" "$(printf %.1f "$t_min")" "$(printf %.1f "$t_deb")"
printf '%-34s %12s %12s\n' "image allocated on disk (MB)" "$(alloc "$work/min.img")" "$(alloc "$work/deb.img")"
printf '%-34s %12s %12s\n' "packages" "1" "$pkgs"
printf '%-34s %12s %12s\n' ".debs downloaded (MB)" "-" "$debs_mb"
echo
echo "first boot in QEMU (TCG, -smp 2, 2 GiB): ${boot:-skipped} ${login:-}"
