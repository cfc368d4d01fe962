package boards

import (
	"fmt"
)

// Netboot is what the board's U-Boot does with a netbooted kernel: the
// TFTP sizes the boot script sets and, where its booti unpacks a
// compressed Image (U-Boot v2020.07 on: kernel_comp_addr_r and
// kernel_comp_size), the load addresses of the U-Boot build that
// netboots the board, so the area booti unpacks into can be checked
// against everything else it has in memory (Unpack).
type Netboot struct {
	// KernelCompression is how the served kernel is compressed: "gzip"
	// (CONFIG_GZIP, on by default in U-Boot) or "" for the plain Image.
	KernelCompression string `toml:"kernel_compression" json:"kernel_compression,omitempty"`
	// TFTPBlockSize and TFTPWindowSize are set as tftpblocksize and
	// tftpwindowsize (CONFIG_NET_TFTP_VARS); 0 leaves U-Boot's default.
	TFTPBlockSize  int `toml:"tftp_blocksize" json:"tftp_blocksize,omitempty"`
	TFTPWindowSize int `toml:"tftp_windowsize" json:"tftp_windowsize,omitempty"`
	// The U-Boot build's default environment: where pxe loads the kernel,
	// initramfs and device tree, and where the running script and the
	// pxelinux file sit.
	KernelAddr  uint64 `toml:"kernel_addr_r" json:"kernel_addr_r,omitempty"`
	RamdiskAddr uint64 `toml:"ramdisk_addr_r" json:"ramdisk_addr_r,omitempty"`
	FDTAddr     uint64 `toml:"fdt_addr" json:"fdt_addr,omitempty"`
	ScriptAddr  uint64 `toml:"scriptaddr" json:"scriptaddr,omitempty"`
	PXEFileAddr uint64 `toml:"pxefile_addr_r" json:"pxefile_addr_r,omitempty"`
	// KernelCompAddr is kernel_comp_addr_r: booti unpacks there, then
	// moves the Image to kernel_addr_r.
	KernelCompAddr uint64 `toml:"kernel_comp_addr_r" json:"kernel_comp_addr_r,omitempty"`
	// RAMStart and RAMSize: the board's DRAM (the smallest model's).
	RAMStart uint64 `toml:"ram_start" json:"ram_start,omitempty"`
	RAMSize  uint64 `toml:"ram_size" json:"ram_size,omitempty"`
}

// MaxTFTPBlockSize is the largest TFTP block that fits one 1500-byte
// Ethernet frame. A larger one is IP-fragmented, and U-Boot drops
// fragments unless built with CONFIG_IP_DEFRAG (the Debian builds are not).
const MaxTFTPBlockSize = 1468

// smallBlob is what the boot script, the pxelinux file and the device
// tree are given in the layout check: each is far smaller.
const smallBlob = 1 << 20

func (n *Netboot) validate() error {
	if n.TFTPBlockSize != 0 && (n.TFTPBlockSize < 512 || n.TFTPBlockSize > MaxTFTPBlockSize) {
		return fmt.Errorf("netboot.tftp_blocksize %d: want 512-%d (one Ethernet frame)", n.TFTPBlockSize, MaxTFTPBlockSize)
	}
	if n.TFTPWindowSize < 0 || n.TFTPWindowSize > 64 {
		return fmt.Errorf("netboot.tftp_windowsize %d: want 1-64 (0: U-Boot's default)", n.TFTPWindowSize)
	}
	switch n.KernelCompression {
	case "":
		return nil
	case "gzip":
	default:
		return fmt.Errorf("netboot.kernel_compression %q: want gzip or nothing (the plain Image)", n.KernelCompression)
	}
	for _, a := range []struct {
		key string
		v   uint64
	}{{"kernel_addr_r", n.KernelAddr}, {"ramdisk_addr_r", n.RamdiskAddr}, {"fdt_addr", n.FDTAddr},
		{"scriptaddr", n.ScriptAddr}, {"pxefile_addr_r", n.PXEFileAddr}, {"kernel_comp_addr_r", n.KernelCompAddr}, {"ram_size", n.RAMSize}} {
		if a.v == 0 {
			return fmt.Errorf("netboot.kernel_compression needs netboot.%s", a.key)
		}
	}
	return nil
}

// Unpack checks that booti's unpack area [kernel_comp_addr_r, +image)
// lies in RAM and overlaps nothing else U-Boot holds when pxe boot runs
// booti: the compressed kernel as loaded (packed bytes), the kernel where
// booti puts it (span: the Image header's image_size, with the BSS, from
// kernel_addr_r rounded up to 2 MiB as booti relocates it), the
// initramfs, the device tree, the running boot script and the pxelinux
// file. It also checks booti's limit: it unpacks at most ten times
// kernel_comp_size.
func (n *Netboot) Unpack(packed, image, span, initrd int64) error {
	if n.KernelCompression == "" {
		return nil
	}
	if packed <= 0 || image <= 0 || span < image || initrd < 0 {
		return fmt.Errorf("netboot: bad sizes (packed %d, image %d, span %d, initramfs %d)", packed, image, span, initrd)
	}
	if image > 10*packed {
		return fmt.Errorf("netboot: the kernel (%d bytes) is more than ten times its compressed size (%d): booti would not unpack it all", image, packed)
	}
	type area struct {
		what       string
		start, end uint64
	}
	const twoMiB = 2 << 20
	unpack := area{"booti's unpack area (kernel_comp_addr_r)", n.KernelCompAddr, n.KernelCompAddr + uint64(image)}
	if unpack.start < n.RAMStart || unpack.end > n.RAMStart+n.RAMSize {
		return fmt.Errorf("netboot: %s 0x%x-0x%x is outside RAM 0x%x-0x%x", unpack.what, unpack.start, unpack.end, n.RAMStart, n.RAMStart+n.RAMSize)
	}
	for _, a := range []area{
		{"the compressed kernel (kernel_addr_r)", n.KernelAddr, n.KernelAddr + uint64(packed)},
		{"the kernel booti relocates (kernel_addr_r)", n.KernelAddr, (n.KernelAddr+twoMiB-1)&^(twoMiB-1) + uint64(span)},
		{"the initramfs (ramdisk_addr_r)", n.RamdiskAddr, n.RamdiskAddr + uint64(initrd)},
		{"the device tree (fdt_addr)", n.FDTAddr, n.FDTAddr + smallBlob},
		{"the boot script (scriptaddr)", n.ScriptAddr, n.ScriptAddr + smallBlob},
		{"the pxelinux file (pxefile_addr_r)", n.PXEFileAddr, n.PXEFileAddr + smallBlob},
	} {
		if unpack.start < a.end && a.start < unpack.end {
			return fmt.Errorf("netboot: %s 0x%x-0x%x overlaps %s 0x%x-0x%x", unpack.what, unpack.start, unpack.end, a.what, a.start, a.end)
		}
	}
	return nil
}
