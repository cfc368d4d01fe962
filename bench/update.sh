#!/usr/bin/env bash
# Benchmark (issue 14): what an update costs over the network next to
# re-flashing the card, for the qemu-virt board.
#
# Sizes (no QEMU): for each change, v1 and v2 are built with
# `mkimage update` (v2 with --parent v1) and v2 as a card image with
# `mkimage build`:
#   (a) one file changed by an --overlay, --rootfs minimal
#   (b) one package added (--packages $BENCH_PACKAGE), --rootfs debian
#       (minutes; BENCH_DEBIAN=0 skips it)
#   (c) a kernel update: the Debian arm64 kernel before the current one in
#       mkimage's apt lists -> the current one, --rootfs minimal (whose
#       root carries the kernel's modules)
# The node downloads the incremental root stream and the boot files of
# the new version its running version does not have (apply copies the
# others on the card), plus the manifest and its signature. Re-flashing writes the image's mapped blocks (its
# .bmap), as `mkimage flash` does.
#
# Times (QEMU, changes (a) and (c)): the v1 card boots, a boot hook runs
# `nodeinit update apply` against v2 served by `mkimage serve` (timed
# with the guest's /proc/uptime) and reboots; the next boot runs until
# `nodeinit update check` commits v2. (b) is not booted: a Debian root's
# first boot configures its packages for minutes under emulation.
#
# Usage: bench/update.sh               (from anywhere in the checkout)
#   BENCH_DEBIAN=0       skip (b)
#   BENCH_PACKAGE=NAME   the package (b) adds (default tree)
#   BENCH_QEMU=0         skip the QEMU times
#   BENCH_CARD=SIZE      the card QEMU boots (default 8G, sparse)
#   MKIMAGE=path         a built mkimage (default: go build ./cmd/mkimage)
# Caches: the normal mkimage cache (${XDG_CACHE_HOME:-~/.cache}/mkimage);
# the older kernel .deb of (c) is fetched into its apt/debs. Everything
# else lives in a temporary directory removed on exit. Prints tables;
# asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
export MKIMAGE_SOURCE=$PWD # the initramfs build needs the source tree

for t in go jq bc apt-get apt-cache qemu-system-aarch64 python3; do
	command -v $t >/dev/null || {
		echo "bench/update.sh: $t not found (Debian: golang, jq, bc, apt, qemu-system-arm, python3)" >&2
		exit 1
	}
done

start=$(date +%s)
work=$(mktemp -d /tmp/mkimage-bench-update.XXXXXX)
serve_pid=""
qemu_pid=""
cleanup() {
	# mkimage qemu stops its VM on SIGINT.
	[ -n "$qemu_pid" ] && kill -INT "$qemu_pid" 2>/dev/null
	[ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${MKIMAGE:-}" ]; then
	go build -o "$work/mkimage" ./cmd/mkimage
	MKIMAGE=$work/mkimage
fi
cache=${XDG_CACHE_HOME:-$HOME/.cache}/mkimage
srv=$work/srv # what mkimage serve serves: the bundles
mkdir -p "$srv"
"$MKIMAGE" key generate -o "$work/fleet" >/dev/null
log() { echo "bench/update.sh: $*" >&2; }

# A free TCP port on the host (the URL is baked into the hooks).
freeport() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
http_port=$(freeport)
tftp_port=$(freeport)
# QEMU's user network: the host is 10.0.2.2; "current" links to the v2
# being offered.
url=http://10.0.2.2:$http_port/current/

# overlay DIR MARKER: the boot hooks every version runs, and a marker
# file (the "one file" of change (a)). Network lines as e2e/rollback_test.go.
overlay() {
	mkdir -p "$1/etc/boot.d"
	echo "$2" >"$1/etc/bench-marker"
	cat >"$1/etc/boot.d/50-bench-net" <<'EOF'
#!/bin/sh
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
[ -s /etc/machine-id ] || tr -d - </proc/sys/kernel/random/uuid >/etc/machine-id
EOF
	# After 90-mkimage-check: when it committed a version, and when.
	cat >"$1/etc/boot.d/91-bench-checked" <<'EOF'
#!/bin/sh
echo "BENCH-CHECKED uptime $(cut -d' ' -f1 /proc/uptime)"
EOF
	# Apply the served bundle, timed by the kernel's clock; reboot into
	# it when installed, else power off.
	cat >"$1/etc/boot.d/95-bench-apply" <<EOF
#!/bin/sh
t0=\$(cut -d' ' -f1 /proc/uptime)
out=\$(/usr/sbin/nodeinit update apply $url 2>&1)
t1=\$(cut -d' ' -f1 /proc/uptime)
echo "\$out"
echo "BENCH-APPLY \$t0 \$t1"
case \$out in
*" installed ("*) reboot ;;
*) poweroff ;;
esac
EOF
	chmod 755 "$1"/etc/boot.d/*
}

# bundle NAME EPOCH PARENT FLAGS...: mkimage update into $srv/NAME.
bundle() {
	local name=$1 epoch=$2 parent=$3
	shift 3
	log "bundle $name"
	SOURCE_DATE_EPOCH=$epoch "$MKIMAGE" update --board qemu-virt --update-key "$work/fleet.pub" \
		--key "$work/fleet" -o "$srv/$name" ${parent:+--parent "$srv/$parent"} -q "$@" >/dev/null
}

# image NAME EPOCH FLAGS...: mkimage build into $work/NAME.img (+ .bmap).
image() {
	local name=$1 epoch=$2
	shift 2
	log "image $name"
	SOURCE_DATE_EPOCH=$epoch "$MKIMAGE" build --board qemu-virt --update-key "$work/fleet.pub" \
		-o "$work/$name.img" -q "$@" >/dev/null
}

# payload BUNDLE KIND: total size of its payloads of that kind.
payload() {
	jq --arg k "$2" '[.payloads[] | select(.kind == $k) | .size] | add // 0' "$srv/$1/manifest.json"
}

# newboot V1 V2: total size of V2's boot files whose content V1 lacks.
newboot() {
	jq -n --slurpfile a "$srv/$1/manifest.json" --slurpfile b "$srv/$2/manifest.json" '
		[$a[0].payloads[] | select(.kind == "boot") | .sha256] as $have
		| [$b[0].payloads[] | select(.kind == "boot") | select(.sha256 as $s | $have | index($s) | not) | .size]
		| add // 0'
}

# row LABEL V1 V2 IMAGE: one line of the size table.
rows=$work/rows
row() {
	local full incr boot meta total size mapped
	full=$(payload "$3" root-full)
	incr=$(payload "$3" root-incremental)
	boot=$(newboot "$2" "$3")
	meta=$(($(stat -c %s "$srv/$3/manifest.json") + $(stat -c %s "$srv/$3/manifest.sig")))
	total=$((incr + boot + meta))
	size=$(stat -c %s "$work/$4.img")
	mapped=$(($(sed -n 's/.*<MappedBlocksCount> *\([0-9]*\).*/\1/p' "$work/$4.img.bmap") * \
		$(sed -n 's/.*<BlockSize> *\([0-9]*\).*/\1/p' "$work/$4.img.bmap")))
	printf '%-40s %11s %11s %11s %11s %11s %12s %6s\n' "$1" "$full" "$incr" "$boot" "$total" \
		"$size" "$mapped" "$(echo "scale=1; 100 * $total / $mapped" | bc)%" >>"$rows"
}

# (a) One file, minimal root. v1's card image is also what QEMU boots.
overlay "$work/ov1" one
overlay "$work/ov2" two
image a-v1 1700000000 --rootfs minimal --overlay "$work/ov1"
bundle a-v1 1700000000 "" --rootfs minimal --overlay "$work/ov1"
bundle a-v2 1700000100 a-v1 --rootfs minimal --overlay "$work/ov2"
image a-v2 1700000100 --rootfs minimal --overlay "$work/ov2"
row "(a) one file (overlay), minimal" a-v1 a-v2 a-v2

# (b) One package, Debian root.
pkg=${BENCH_PACKAGE:-tree}
if [ "${BENCH_DEBIAN:-1}" != 0 ]; then
	bundle b-v1 1700000000 "" --rootfs debian
	bundle b-v2 1700000100 b-v1 --rootfs debian --packages "$pkg"
	image b-v2 1700000100 --rootfs debian --packages "$pkg"
	row "(b) +1 package ($pkg), debian" b-v1 b-v2 b-v2
else
	printf '%-40s %s\n' "(b) +1 package ($pkg), debian" "skipped (BENCH_DEBIAN=0)" >>"$rows"
fi

# (c) Kernel update. The current kernel is the one (a) used (the
# default: Debian's linux-image-arm64); the older one is the
# linux-image-*-arm64 just below it in the same apt lists.
knew=$(jq -r '.inputs[] | select(.kind == "kernel") | .path' "$work/a-v1.img.manifest.json")
kver=$(jq -r .kernel_version "$work/a-v1.img.manifest.json")
apt=(-o APT::Architecture=arm64 -o APT::Architectures=arm64 -o "Dir::State::Lists=$cache/apt/lists"
	-o "Dir::Cache=$cache/apt/cache" -o Dir::State::status=/dev/null)
kold=$(apt-cache "${apt[@]}" pkgnames linux-image- | grep -E '^linux-image-[0-9.]+-[0-9]+-arm64$' |
	sort -V | grep -B1 -x "linux-image-$kver" | grep -vx "linux-image-$kver" || true)
if [ -n "$kold" ]; then
	# Into the cache's apt/debs, through a directory on the same file
	# system so the .deb appears whole (apt-get checks its hash).
	deb=$(ls "$cache/apt/debs/${kold}_"*_arm64.deb 2>/dev/null | head -1 || true)
	if [ -z "$deb" ]; then
		log "fetching $kold"
		tmp=$(mktemp -d "$cache/apt/debs/.bench.XXXXXX")
		(cd "$tmp" && apt-get "${apt[@]}" -q download "$kold:arm64" >/dev/null 2>&1) ||
			{ rm -rf "$tmp"; log "apt-get download $kold failed"; exit 1; }
		mv "$tmp"/*.deb "$cache/apt/debs/" && rmdir "$tmp"
		deb=$(ls "$cache/apt/debs/${kold}_"*_arm64.deb | head -1)
	fi
	# v2 is (a)'s v1 (current kernel); its card image is a-v1.img.
	bundle c-v1 1699999000 "" --rootfs minimal --overlay "$work/ov1" --kernel "$deb"
	bundle c-v2 1700000000 c-v1 --rootfs minimal --overlay "$work/ov1" --kernel "$knew"
	if [ "${BENCH_QEMU:-1}" != 0 ]; then # the card QEMU boots
		image c-v1 1699999000 --rootfs minimal --overlay "$work/ov1" --kernel "$deb"
	fi
	k1=${kold#linux-image-} k2=$kver
	clabel="(c) kernel ${k1%-arm64} -> ${k2%-arm64}, minimal"
	row "$clabel" c-v1 c-v2 a-v1
else
	printf '%-40s %s\n' "(c) kernel update" "n/a: only one kernel version in the lists" >>"$rows"
fi

# Times: for each change, boot its v1 card, which applies the v2 that
# "current" offers and reboots; then the next boot, until v2 is committed.
qemu_rows=$work/qemu_rows
card=${BENCH_CARD:-8G}
: >"$qemu_rows"
# boot LOG IMAGE: run the card until QEMU exits (-no-reboot: a reboot
# ends it too); LOG.t gets the seconds QEMU ran and when the commit line
# showed (seconds since QEMU started, or nothing).
boot() {
	local t0 seen=""
	t0=$(date +%s.%N)
	"$MKIMAGE" qemu "$2" --in-place -q --timeout 20m --log "$1" 2>/dev/null &
	qemu_pid=$!
	while kill -0 "$qemu_pid" 2>/dev/null; do
		if [ -z "$seen" ] && grep -q "passed its checks: committed" "$1" 2>/dev/null; then
			seen=$(echo "$(date +%s.%N) - $t0" | bc)
		fi
		sleep 0.2
	done
	wait "$qemu_pid" || { log "QEMU failed:"; tail -30 "$1" >&2; exit 1; }
	qemu_pid=""
	echo "$(echo "$(date +%s.%N) - $t0" | bc) $seen" >"$1.t"
}
# qemu_times LABEL V1-IMAGE V2-BUNDLE: the two boots, and a row of the table.
qemu_times() {
	local b1=$work/$3-boot1.log b2=$work/$3-boot2.log apply got t1 commit up
	ln -sfn "$3" "$srv/current"
	# A card bigger than the image, as a real one is (first boot grows
	# the root to it): on a card of the image's own size, a kernel
	# update's stream and new modules do not fit beside the running root.
	truncate -s "$card" "$work/$2.img"
	log "QEMU: $1: boot 1 (apply)"
	boot "$b1" "$work/$2.img"
	grep -q " installed (" "$b1" || { log "boot 1 did not install $3:"; tail -30 "$b1" >&2; exit 1; }
	log "QEMU: $1: boot 2 (commit)"
	boot "$b2" "$work/$2.img"
	grep -q "passed its checks: committed" "$b2" || { log "boot 2 did not commit $3:"; tail -30 "$b2" >&2; exit 1; }
	apply=$(sed -n 's/.*BENCH-APPLY \([0-9.]*\) \([0-9.]*\).*/\2 - \1/p' "$b1" | head -1 | bc)
	got=$(sed -n 's/.*installed (\([0-9]*\) bytes downloaded).*/\1/p' "$b1" | head -1)
	grep -q "incremental root from" "$b1" || got="$got full" # should not happen: v1 is the parent
	read -r t1 _ <"$b1.t"
	read -r _ commit <"$b2.t"
	up=$(sed -n 's/.*BENCH-CHECKED uptime \([0-9.]*\).*/\1/p' "$b2" | head -1)
	printf '%-40s %9.1f %12s %9.1f %9.1f %9.1f\n' "$1" "$apply" "$got" "$t1" "$commit" "$up" >>"$qemu_rows"
}
if [ "${BENCH_QEMU:-1}" != 0 ]; then
	"$MKIMAGE" serve "$srv" --dhcp off --http-port "$http_port" --tftp-port "$tftp_port" >"$work/serve.log" 2>&1 &
	serve_pid=$!
	qemu_times "(a) one file (overlay), minimal" a-v1 a-v2
	if [ -n "$kold" ]; then
		qemu_times "$clabel" c-v1 c-v2
	fi
fi

# The tables.
echo
echo "mkimage update vs re-flash: qemu-virt, $(date -u +%Y-%m-%d), $(nproc) host cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "Bytes. Bundle: v2's root.full, its incremental root stream from v1, its boot files v1 does not have (the node"
echo "copies the others on the card), and the total the node downloads (incremental + those boot files + manifest and signature)."
echo "Re-flash: v2's card image size and the mapped bytes a bmap-aware flash writes (mkimage flash); % = download / written."
printf '%-40s %11s %11s %11s %11s %11s %12s %6s\n' "change" "root.full" "incremental" "boot files" "download" \
	"image" "flash writes" "%"
cat "$rows"
if [ -s "$qemu_rows" ]; then
	echo
	echo "Seconds, one node with a $card card: qemu-system-aarch64 -M virt, 1 vCPU cortex-a53 under TCG emulation (no KVM), on a"
	echo "$(nproc)-core host busy with other jobs: slower and noisier than an ARM board. apply: nodeinit update apply"
	echo "(download, btrfs receive, boot files) by the guest's clock; bytes: the node's own count of payload bytes it"
	echo "downloaded; boot 1: QEMU start to the reboot into v2; commit: the next QEMU start to the \"committed\" line;"
	echo "uptime: the guest's uptime once the check hook has run (kernel start to committed)."
	printf '%-40s %9s %12s %9s %9s %9s\n' "change" "apply" "bytes" "boot 1" "commit" "uptime"
	cat "$qemu_rows"
fi
echo
echo "bench/update.sh took $(($(date +%s) - start)) s"
