#!/usr/bin/env bash
# Benchmark (issue 19, item 5): bytes on the wire when a fleet netboots.
# 46 clients (bench/tftpget, pack.ag/tftp's client asking for U-Boot's
# block size 1468 and, where the server has it, window size 16) fetch one
# node's boot files at once -- boot.scr.uimg, its pxelinux.cfg/01-<mac>,
# initrd.img, the kernel, the device tree -- from:
#   dnsmasq  Debian's dnsmasq-base TFTP server with today's tree: the
#            plain Image (dnsmasq has no RFC 7440 window size: lock-step)
#   mkimage  `mkimage serve`, today's tree, window size 16
#   mkimage  `mkimage serve`, the tree mkimage netboot writes now
#            (Image.gz where the board's U-Boot unpacks it), window 16
# Server and clients sit on the two ends of a veth pair (the server in a
# network namespace made here), the server's side shaped to the rate of
# its switch port (tbf). Prints wall time, bytes the server put on the
# wire (its veth's tx_bytes, headers and retransmits included) and
# payload bytes, side by side. Asserts nothing. Needs root.
#
# Usage: bench/netboot.sh
#   BENCH_BOARD=NAME    the board (default odroid-c2: the 46-node fleet)
#   BENCH_CLIENTS=N     clients at once (default 46)
#   BENCH_RATE=RATE     the server's port, tc syntax (default 1gbit; "" unshaped)
#   MKIMAGE=path        a built mkimage (default: make build)
# The tree is built with the normal mkimage cache; everything else lives
# in a temporary directory removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

for t in go ip tc dnsmasq gzip; do
	command -v $t >/dev/null || {
		echo "bench/netboot.sh: $t not found (Debian: golang, iproute2, dnsmasq-base, gzip)" >&2
		exit 1
	}
done
[ "$(id -u)" = 0 ] || { echo "bench/netboot.sh: needs root (network namespace, port 69)" >&2; exit 1; }

board=${BENCH_BOARD:-odroid-c2}
clients=${BENCH_CLIENTS:-46}
rate=${BENCH_RATE-1gbit}
work=$(mktemp -d /tmp/mkimage-bench-netboot.XXXXXX)
chmod 755 "$work"
ns=mkimage-bench-nb-$$
srv_pid=""
cleanup() {
	[ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null && wait "$srv_pid" 2>/dev/null
	ip netns del "$ns" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { echo "bench/netboot.sh: $*" >&2; }

if [ -z "${MKIMAGE:-}" ]; then
	make -s build
	MKIMAGE=$PWD/bin/mkimage
fi
go build -o "$work/tftpget" ./bench/tftpget

# One node, so the tree has its pxelinux.cfg/01-<mac>.
mac=00:1e:06:42:01:01
cat >"$work/cluster.toml" <<TOML
[cluster]
name = "bench"
domain = "bench.lan"
[network]
subnet = "10.79.0.0/24"
gateway = "10.79.0.1"
dns = ["10.79.0.1"]
[[node]]
name = "node01"
mac = "$mac"
ip = "10.79.0.11"
role = "worker"
netboot = "diskless"
TOML
log "mkimage netboot --board $board"
"$MKIMAGE" netboot --board "$board" --rootfs minimal --config "$work/cluster.toml" -o "$work/new" -q >/dev/null

# Today's tree: the same files with the plain Image.
pxe=pxelinux.cfg/01-${mac//:/-}
kernel=$(awk '$1=="kernel"{print $2}' "$work/new/$pxe")
fdt=$(awk '$1=="fdt"{print $2}' "$work/new/$pxe")
mkdir -p "$work/today"
cp -r "$work/new/." "$work/today/"
rm -f "$work/today/root.img"* # HTTP only; not part of this
if [ "$kernel" = Image.gz ]; then
	gzip -dc "$work/new/Image.gz" >"$work/today/Image"
	rm "$work/today/Image.gz"
	sed -i 's/^\(\s*kernel\) Image\.gz$/\1 Image/' "$work/today/$pxe"
fi
files_new=(boot.scr.uimg "$pxe" initrd.img "$kernel" $fdt)
files_today=(boot.scr.uimg "$pxe" initrd.img Image $fdt)

# The provisioning link: server 10.79.0.1 in $ns, clients 10.79.0.2 here.
ip netns add "$ns"
ip link add nb-cli type veth peer name nb-srv netns "$ns"
ip addr add 10.79.0.2/24 dev nb-cli
ip link set nb-cli up
ip -n "$ns" addr add 10.79.0.1/24 dev nb-srv
ip -n "$ns" link set nb-srv up
ip -n "$ns" link set lo up
if [ -n "$rate" ]; then
	# A queue of 50 ms at the rate: room for every client's window, no drops.
	tc -n "$ns" qdisc add dev nb-srv root tbf rate "$rate" burst 256kb latency 50ms
fi
txbytes() { ip netns exec "$ns" cat /sys/class/net/nb-srv/statistics/tx_bytes; }

# row NAME TREE WINDOW FILES...: start the server, fetch, stop it.
rows=()
row() {
	local name=$1 tree=$2 window=$3
	shift 3
	case $name in
	dnsmasq)
		ip netns exec "$ns" dnsmasq --keep-in-foreground --conf-file=/dev/null --port=0 --user=root \
			--listen-address=10.79.0.1 --bind-interfaces --enable-tftp --tftp-root="$tree" \
			--tftp-max=$((clients * 2)) --quiet-tftp --pid-file= --log-facility="$work/$name.log" &
		;;
	mkimage)
		ip netns exec "$ns" "$MKIMAGE" serve "$tree" --listen 10.79.0.1 >"$work/$name.log" 2>&1 &
		;;
	esac
	srv_pid=$!
	for _ in $(seq 50); do
		ip netns exec "$ns" ss -Hluna 'sport = :69' | grep -q . && break
		sleep 0.1
	done
	local before out after
	before=$(txbytes)
	out=$("$work/tftpget" -server 10.79.0.1:69 -clients "$clients" -blksize 1468 -window "$window" "$@")
	after=$(txbytes)
	kill "$srv_pid"
	wait "$srv_pid" 2>/dev/null || true
	srv_pid=""
	local secs payload failed
	read -r secs payload failed <<<"$out"
	local kfile=${4}
	rows+=("$(printf '%-8s %-9s %6s %8s | %7s %9.1f %9.1f %6s' "$name" "$kfile" \
		"$(du -b "$tree/$kfile" | cut -f1 | awk '{printf "%.1f", $1/1e6}')" \
		"${window/#0/none}" "$secs" "$(echo "($after - $before) / 1000000" | bc -l)" \
		"$(echo "$payload / 1000000" | bc -l)" "$failed")")
	log "${rows[-1]}"
}
row dnsmasq "$work/today" 0 "${files_today[@]}"
row mkimage "$work/today" 16 "${files_today[@]}"
row mkimage "$work/new" 16 "${files_new[@]}"

echo
echo "$clients nodes fetch one node's boot files by TFTP at once (board $board, server port ${rate:-unshaped}, block size 1468)"
echo "files: ${files_new[*]}"
printf '%-8s %-9s %6s %8s | %7s %9s %9s %6s\n' server kernel MB window wall_s MB_wire MB_payload failed
for r in "${rows[@]}"; do echo "$r"; done
