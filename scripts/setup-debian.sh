#!/usr/bin/env bash
# Installs what mkimage and its tests need on a Debian 12 machine. Run as
# root (or it re-runs itself with sudo). It never changes the host's dpkg
# architectures or apt sources: arm64 packages are fetched later by mkimage
# itself into its own cache.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then exec sudo "$0" "$@"; fi

pkgs=(
  # image building and the real tools that judge its outputs
  btrfs-progs dosfstools mtools fdisk fakeroot xz-utils zstd cpio
  # booting images under emulation
  qemu-system-arm u-boot-qemu ipxe-qemu
  # flashing cross-checks
  bmap-tools
  # kernel config resolution and builds
  linux-source-6.1 gcc-aarch64-linux-gnu bc bison flex libssl-dev make
  # test-only cross-checks and test roots
  u-boot-tools debootstrap attr nftables iproute2 kmod
  # bench/netboot.sh: the TFTP server users would use instead
  dnsmasq-base
  # device trees: the tests judge the DTB on the card with dtc
  device-tree-compiler
  # update bundles in an OCI registry: the tests push to and pull from a real one
  docker-registry
  # the ingress: the tests run the real haproxy with the generated config
  haproxy
  # i2p: the tests run the real i2pd on the tunnels and keys nodeinit writes
  i2pd
  # node backups: the tests export snapshots over SSH to a real sshd
  openssh-server
  # container moves: the last pass syncs a stopped container with the node's
  # rsync; the tests start and stop a real container (a static busybox root)
  # with LXC and try CRIU's live migration
  rsync lxc criu busybox-static
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all Debian packages present"
fi
# The tests start their own haproxy, registry, i2pd and sshd on their own
# ports; the services these packages start when installed are not wanted
# (the registry's would listen on every interface at :5000, i2pd's would
# join the I2P network, sshd's would accept logins on port 22, LXC's would
# make a bridge lxcbr0 and autostart containers). Only the
# ones installed just now: a service the machine already ran (the sshd
# you log in by, your haproxy) is left alone. Harmless without systemd.
services=()
for p in "${missing[@]}"; do
  case $p in
    haproxy | docker-registry | i2pd) services+=("$p") ;;
    lxc) services+=(lxc lxc-net) ;;
    openssh-server) services+=(ssh) ;;
  esac
done
if [ ${#services[@]} -gt 0 ]; then
  systemctl disable --now "${services[@]}" 2>/dev/null || true
fi
if ! command -v go >/dev/null; then
  echo "setup: Go 1.26 or newer is needed (https://go.dev/dl); not found on PATH" >&2
  exit 1
fi
