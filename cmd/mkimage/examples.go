package main

// examples end each command's --help: real command lines, the common
// case first. Keyed by the name newFlags gets.
var examples = map[string]string{
	"build": `  mkimage --board odroid-c2 -o node.img                          Debian root, first boot configures it
  mkimage --board odroid-c2 --config cluster.toml -o fleet.img   one image for every node of the inventory
  mkimage --board qemu-virt --rootfs minimal -o t.img && mkimage qemu t.img   try it in QEMU`,
	"boards": `  mkimage boards
  mkimage boards --json`,
	"bootloader": `  mkimage bootloader odroid-c2 --amlogic ~/amlogic-blobs -o u-boot.bin.sd.bin
  mkimage bootloader identify u-boot.bin.sd.bin flash-image.bin`,
	"bootloader identify": `  mkimage bootloader identify u-boot.bin.sd.bin`,
	"bootpath": `  mkimage bootpath --board odroid-c2
  mkimage bootpath --board macchiatobin --kernel linux-image-6.1.0-57-arm64_6.1.192-3_arm64.deb --json`,
	"cache": `  mkimage cache                                   each kind's entries, size and last use
  mkimage cache prune --older-than 30d --dry-run  what a prune would remove, and the space it frees`,
	"cache prune": `  mkimage cache prune --dry-run        what entries unused for 30 days would go, and the space freed
  mkimage cache prune --older-than 7d  remove every entry no build used in a week`,
	"config check": `  mkimage config check cluster.toml
  mkimage config check cluster.toml --json`,
	"container": `  mkimage container move --config cluster.toml web node07`,
	"container move": `  mkimage container move --config cluster.toml web node07                   from the node the config names
  mkimage container move --config cluster.toml --from node07 web node03     on from where an earlier move took it
  mkimage container move --config cluster.toml --live web node07            its processes go on (CRIU), cold where CRIU cannot
  mkimage container move --config cluster.toml --ssh "ssh -i fleet_ed25519" web node07`,
	"fleet": `  mkimage fleet status --config cluster.toml --server http://build-host:8080
  mkimage fleet rollout --config cluster.toml --server http://build-host:8080 --key fleet.key --channel-file bundles/channel.json --version 0123456789abcdef --source http://build-host:8080/v2/`,
	"fleet status": `  mkimage fleet status --config cluster.toml --server http://build-host:8080          one row per inventory node: versions, failures, last seen
  mkimage fleet status --config cluster.toml --server http://build-host:8080 --json   the same rows as JSON`,
	"fleet rollout": `  mkimage fleet rollout --config cluster.toml --server http://build-host:8080 --key fleet.key --channel-file bundles/channel.json --version 0123456789abcdef --source http://build-host:8080/v2/
  mkimage fleet rollout --config cluster.toml --server http://build-host:8080 --key fleet.key --channel-file bundles/channel.json --version 0123456789abcdef   resume after an interruption`,
	"flash": `  mkimage flash node.img /dev/sdb /dev/sdc      write, sync and verify both cards at once
  mkimage flash node.img.zst /dev/sd[b-k] --yes  ten cards, no question asked`,
	"initramfs": `  mkimage initramfs --board odroid-c2 --kernel linux-image-arm64.deb -o initrd.img`,
	"inspect": `  mkimage inspect node.img
  mkimage inspect node.img --json`,
	"kconfig": `  mkimage kconfig --board odroid-c2 --kernel-src linux-6.1.tar.xz -o .config
  mkimage kconfig check --config /boot/config-6.1.0-57-arm64 --require lxc,netfilter,btrfs`,
	"kconfig check": `  mkimage kconfig check --config /boot/config-6.1.0-57-arm64 --require lxc,netfilter,btrfs`,
	"kernel": `  mkimage kernel --board odroid-c2 --src linux-6.1.tar.xz -o kernel-c2
  mkimage --board odroid-c2 --kernel kernel-c2 -o node.img`,
	"key":          `  mkimage key generate -o fleet.key --comment "fleet 2026"`,
	"key generate": `  mkimage key generate -o fleet.key --comment "fleet 2026"`,
	"netboot": `  mkimage netboot --board odroid-c2 --config cluster.toml -o tftp && mkimage serve tftp
  mkimage netboot --board odroid-c2 --config cluster.toml --update-key fleet.key.pub --key fleet.key -o tftp   nodes take only signed images`,
	"qemu": `  mkimage qemu node.img
  mkimage qemu node.img --expect "login:" --timeout 5m --log console.log`,
	"serve": `  mkimage serve tftp                                                       TFTP and HTTP, beside the network's own DHCP
  mkimage serve tftp --dhcp full --listen 10.0.0.1 --config cluster.toml  the only DHCP server of an isolated network
  mkimage serve bundles --http-port 8080 --status-dir status               bundles for the nodes' updates, and their status reports
  mkimage serve bundles --http-port 8080 --status-dir status --config cluster.toml --max-rebooting 4   reports from the inventory's nodes only; 4 reboot leases`,
	"update": `  SOURCE_DATE_EPOCH=$(date +%s) mkimage update --board odroid-c2 --update-key fleet.key.pub --key fleet.key -o v2
  SOURCE_DATE_EPOCH=$(date +%s) mkimage update --board odroid-c2 --update-key fleet.key.pub --key fleet.key --parent v2 -o v3`,
	"update push": `  mkimage update push v2 registry.example.com/fleet/odroid-c2:v2 --keys fleet.key.pub     checked, then only the blobs the registry lacks
  mkimage update push v2 localhost:5000/fleet/odroid-c2:v2 --keys fleet.key.pub --plain-http`,
	"update pull": `  mkimage update pull registry.example.com/fleet/odroid-c2:v2 v2 --keys fleet.key.pub
  mkimage update pull registry.example.com/fleet/odroid-c2@sha256:... v2 --keys fleet.key.pub --docker-config ci/docker.json`,
	"update status": `  mkimage update status --server http://build-host:8080          one row per node: versions, last report, why the last bad one failed
  mkimage update status --server http://build-host:8080 --json   every node's last report as it sent it`,
}
