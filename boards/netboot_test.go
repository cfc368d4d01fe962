package boards

import (
	"strings"
	"testing"
)

// Sizes of the Debian 12 arm64 kernel (6.1: a 33 MiB Image whose header
// asks for 35 MiB with its BSS, about 11 MiB gzip'd) with room to grow,
// and an initramfs far larger than the ~15 MiB one mkimage builds.
const (
	debianImage  = 40 << 20
	debianKernel = 48 << 20
	debianPacked = 16 << 20
	bigInitrd    = 128 << 20
)

// Every board either serves the plain Image or has an unpack area clear
// of everything U-Boot holds, with sizes beyond Debian's.
func TestNetbootEveryBoard(t *testing.T) {
	all, err := All()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range all {
		n := b.Netboot
		if err := n.Unpack(debianPacked, debianImage, debianKernel, bigInitrd); err != nil {
			t.Errorf("%s: %v", b.Name, err)
		}
		if n.KernelCompression != "" && (n.TFTPBlockSize == 0 || n.TFTPWindowSize < 2) {
			// A U-Boot new enough to unpack a kernel (v2020.07) reads
			// tftpwindowsize too.
			t.Errorf("%s: unpacks a kernel but sets no TFTP block and window size", b.Name)
		}
		t.Logf("%s: kernel %q, tftp blocksize %d windowsize %d", b.Name, n.KernelCompression, n.TFTPBlockSize, n.TFTPWindowSize)
	}
}

func TestNetbootUnpackRejects(t *testing.T) {
	base := func() Netboot {
		b, err := Get("qemu-virt")
		if err != nil {
			t.Fatal(err)
		}
		return b.Netboot
	}
	for _, c := range []struct {
		name                        string
		mod                         func(*Netboot)
		packed, image, span, initrd int64
		want                        string
	}{
		{"fits", func(*Netboot) {}, debianPacked, debianImage, debianKernel, bigInitrd, ""},
		{"plain image", func(n *Netboot) { n.KernelCompression = ""; n.KernelCompAddr = n.KernelAddr }, 1, 1 << 40, 1 << 40, 1 << 40, ""},
		{"initramfs reaches it", func(*Netboot) {}, debianPacked, debianImage, debianKernel, 0x0c000001, "overlaps the initramfs"},
		{"on the kernel", func(n *Netboot) { n.KernelCompAddr = n.KernelAddr + 8<<20 }, debianPacked, debianImage, debianKernel, 1, "overlaps the compressed kernel"},
		{"on the relocated kernel", func(n *Netboot) { n.KernelCompAddr = n.KernelAddr + 40<<20 }, debianPacked, debianImage, debianKernel, 1, "overlaps the kernel booti relocates"},
		{"on the device tree", func(n *Netboot) { n.KernelCompAddr = n.FDTAddr + 512<<10 }, 1 << 20, 1 << 20, 1 << 20, 1, "overlaps the device tree"},
		{"past RAM", func(n *Netboot) { n.RAMSize = 0x10000000 }, debianPacked, debianImage, debianKernel, 1, "outside RAM"},
		{"below RAM", func(n *Netboot) { n.KernelCompAddr = 0x1000 }, debianPacked, debianImage, debianKernel, 1, "outside RAM"},
		{"ten times", func(*Netboot) {}, 1 << 20, 11 << 20, 11 << 20, 1, "more than ten times"},
		{"no sizes", func(*Netboot) {}, 0, 1, 1, 1, "bad sizes"},
		{"span below image", func(*Netboot) {}, 1, 2, 1, 1, "bad sizes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := base()
			c.mod(&n)
			err := n.Unpack(c.packed, c.image, c.span, c.initrd)
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Errorf("Unpack: %v, want %q", err, c.want)
			}
		})
	}
}

func TestNetbootValidate(t *testing.T) {
	for _, c := range []struct{ toml, want string }{
		{"kernel_compression = \"zstd\"", "want gzip or nothing"},
		{"kernel_compression = \"gzip\"", "needs netboot.kernel_addr_r"},
		{"tftp_blocksize = 8192", "one Ethernet frame"},
		{"tftp_windowsize = 65", "want 1-64"},
		{"tftp_window = 4", "unknown key"},
	} {
		data := "name = \"x\"\nconsole = \"ttyS0\"\nfirst_partition_offset = \"4MiB\"\nmodules = [\"m\"]\n[netboot]\n" + c.toml + "\n"
		if _, err := Parse("x.toml", []byte(data)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.toml, err, c.want)
		}
	}
}
