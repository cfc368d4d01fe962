package netboot

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/internal/bmap"
	"github.com/mkimage/mkimage/internal/build/uboot"
	"github.com/mkimage/mkimage/internal/compress"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/update"
	"github.com/mkimage/mkimage/internal/update/updatetest"
)

// TestWriteSigned: with a key, images.json lists the images and maps
// the nodes fetch with their sizes and sums, signed; the boot files
// U-Boot fetches are not in it. Long map ranges are split so a node can
// check each before writing it.
func TestWriteSigned(t *testing.T) {
	tmp := t.TempDir()
	card := filepath.Join(tmp, "card.img")
	data := bytes.Repeat([]byte("card"), (bmap.CheckedRange+8192)/4)
	os.WriteFile(card, data, 0o644)
	m, _ := bmap.Create(bytes.NewReader(data), int64(len(data)), []bmap.Extent{{Off: 0, Len: int64(len(data))}})
	if err := m.WriteFile(card + ".bmap"); err != nil {
		t.Fatal(err)
	}
	k := updatetest.Key(3)
	o := baseOptions(t)
	o.Card, o.Nodes[0].Mode = card, Install
	o.Key, o.Trusted, o.Board = &k, []update.PublicKey{updatetest.Key(4).Public(), k.Public()}, "odroid-c2"
	dir := filepath.Join(tmp, "nb")
	res, err := Write(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := os.ReadFile(filepath.Join(dir, update.NetbootFile))
	sig, _ := os.ReadFile(filepath.Join(dir, update.NetbootSignature))
	man, _, err := update.VerifyNetboot(doc, sig, []update.PublicKey{k.Public()})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range man.Files {
		names = append(names, f.Name)
		if f.SHA256 != fileSum(t, res, f.Name) {
			t.Errorf("%s: sha256 %s, the tree's %s", f.Name, f.SHA256, fileSum(t, res, f.Name))
		}
	}
	if got := strings.Join(names, " "); man.Board != "odroid-c2" || got != "node.img node.img.bmap root.img root.img.bmap" {
		t.Errorf("board %q, files %q", man.Board, got)
	}
	bm, err := bmap.ReadFile(filepath.Join(dir, "node.img.bmap"))
	if err != nil {
		t.Fatal(err)
	}
	if len(bm.Ranges) != 2 {
		t.Errorf("node.img.bmap: %d ranges, want the one range split in 2", len(bm.Ranges))
	}
	if orig, _ := bmap.ReadFile(card + ".bmap"); len(orig.Ranges) != 1 {
		t.Error("the build's own map was changed")
	}
}

func testRoot(t *testing.T) *fstree.Tree {
	t.Helper()
	ep := time.Unix(0, 0)
	tr := fstree.New(ep)
	if _, err := tr.MkdirAll("sbin", ep); err != nil {
		t.Fatal(err)
	}
	if err := tr.Put("sbin/init", fstree.NewFile(0o755, []byte("#!/bin/sh\necho hi\n"), ep)); err != nil {
		t.Fatal(err)
	}
	return tr
}

func mac(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }

func baseOptions(t *testing.T) Options {
	return Options{
		PXEDefaults: []string{"default-arm-meson-p200", "default-arm-meson", "default-arm"},
		Kernel:      []byte("kernel"), Initrd: []byte("initrd"),
		DTB: []byte("dtb"), DTBPath: "amlogic/meson-gxbb-odroidc2.dtb",
		Cmdline: "console=ttyAML0,115200 root=LABEL=root rootwait",
		Root:    testRoot(t),
		Nodes: []Node{
			{Name: "node01", MAC: mac("00:1e:06:42:01:01")},
			{Name: "node02", MAC: mac("00:1E:06:42:01:02"), Mode: Diskless},
		},
		HTTPPort: 8080,
	}
}

func readMenu(t *testing.T, dir, name string) uboot.Menu {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	m, err := uboot.ParseMenu(string(b))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if len(m.Entries) != 1 {
		t.Fatalf("%s: %d entries", name, len(m.Entries))
	}
	return m
}

func TestWriteDiskless(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nb")
	res, err := Write(dir, baseOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"boot.scr.uimg", "Image", "initrd.img", "dtbs/amlogic/meson-gxbb-odroidc2.dtb",
		"pxelinux.cfg/01-00-1e-06-42-01-01", "pxelinux.cfg/01-00-1e-06-42-01-02",
		"pxelinux.cfg/default-arm-meson-p200", "pxelinux.cfg/default-arm-meson", "pxelinux.cfg/default-arm", "pxelinux.cfg/default",
		"root.img", "root.img.bmap", "netboot.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "node.img")); err == nil {
		t.Error("node.img written with no install node")
	}
	// boot.scr.uimg: a valid script image running the pxelinux walk.
	b, _ := os.ReadFile(filepath.Join(dir, "boot.scr.uimg"))
	h, payload, err := uboot.ParseImage(b)
	if err != nil {
		t.Fatal(err)
	}
	script, err := uboot.ScriptText(payload)
	if err != nil || h.Type != uboot.TypeScript || !strings.Contains(script, "pxe get && pxe boot") {
		t.Fatalf("script %q type %d: %v", script, h.Type, err)
	}
	m := readMenu(t, dir, "pxelinux.cfg/01-00-1e-06-42-01-01")
	e := m.Entries[0]
	if e.Kernel != "Image" || e.Initrd != "initrd.img" || e.FDT != "dtbs/amlogic/meson-gxbb-odroidc2.dtb" {
		t.Errorf("entry paths: %+v", e)
	}
	sum := fileSum(t, res, "root.img")
	for _, want := range []string{"console=ttyAML0,115200", "root=http://:8080/root.img", "netroot.sha256=" + sum, "rootwait"} {
		if !strings.Contains(" "+e.Append+" ", " "+want+" ") {
			t.Errorf("append %q lacks %q", e.Append, want)
		}
	}
	if strings.Contains(e.Append, "LABEL=root") {
		t.Errorf("diskless append keeps the card root: %q", e.Append)
	}
	// The bmap describes root.img and its ranges check out.
	bm, err := bmap.ReadFile(filepath.Join(dir, "root.img.bmap"))
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(filepath.Join(dir, "root.img"))
	if bm.ImageSize != fi.Size() || bm.MappedBlocks() == 0 {
		t.Errorf("bmap image size %d, file %d, mapped %d", bm.ImageSize, fi.Size(), bm.MappedBlocks())
	}
	img, _ := os.ReadFile(filepath.Join(dir, "root.img"))
	if string(img[0x10040:0x10048]) != "_BHRfS_M" {
		t.Error("root.img has no btrfs superblock")
	}
	var man Result
	mb, _ := os.ReadFile(filepath.Join(dir, "netboot.json"))
	if err := json.Unmarshal(mb, &man); err != nil || len(man.Nodes) != 2 || man.Nodes[0].Mode != Diskless {
		t.Errorf("manifest %+v: %v", man, err)
	}
	if got := res.Defaults[len(res.Defaults)-1]; got != "pxelinux.cfg/default" {
		t.Errorf("last default %q", got)
	}
	// No temporary directories left beside the output.
	ents, _ := os.ReadDir(filepath.Dir(dir))
	if len(ents) != 1 {
		t.Errorf("parent holds %d entries, want only the tree", len(ents))
	}
}

func fileSum(t *testing.T, r *Result, name string) string {
	for _, f := range r.Files {
		if f.Path == name {
			return f.SHA256
		}
	}
	t.Fatalf("%s not in result", name)
	return ""
}

func TestWriteInstall(t *testing.T) {
	tmp := t.TempDir()
	card := filepath.Join(tmp, "card.img")
	os.WriteFile(card, []byte(strings.Repeat("x", 8192)), 0o644)
	m := &bmap.Map{ImageSize: 8192, BlockSize: 4096, ChecksumType: "sha256"}
	if err := m.WriteFile(card + ".bmap"); err != nil {
		t.Fatal(err)
	}
	o := baseOptions(t)
	o.Card = card
	o.Nodes[0].Mode = Install
	dir := filepath.Join(tmp, "nb")
	res, err := Write(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	e := readMenu(t, dir, "pxelinux.cfg/01-00-1e-06-42-01-01").Entries[0]
	for _, want := range []string{"root=LABEL=root", "netinstall=http://:8080/node.img", "netinstall.sha256=" + fileSum(t, res, "node.img")} {
		if !strings.Contains(" "+e.Append+" ", " "+want+" ") {
			t.Errorf("install append %q lacks %q", e.Append, want)
		}
	}
	// The default stays diskless: an unknown node never wipes its card.
	if d := readMenu(t, dir, "pxelinux.cfg/default").Entries[0]; strings.Contains(d.Append, "netinstall") {
		t.Errorf("default entry installs: %q", d.Append)
	}
	// Writing again replaces the tree as a whole.
	o.Nodes = o.Nodes[1:]
	if _, err := Write(dir, o); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "pxelinux.cfg/01-00-1e-06-42-01-01")); err == nil {
		t.Error("old node file survived a rewrite")
	}
}

func TestWriteErrors(t *testing.T) {
	tmp := t.TempDir()
	notTree := filepath.Join(tmp, "other")
	os.Mkdir(notTree, 0o755)
	os.WriteFile(filepath.Join(notTree, "precious"), nil, 0o644)
	for _, c := range []struct {
		name string
		dir  string
		mod  func(*Options)
		want string
	}{
		{"no kernel", "a", func(o *Options) { o.Kernel = nil }, "no kernel"},
		{"bad mode", "b", func(o *Options) { o.Nodes[0].Mode = "nfs" }, `node node01: netboot mode "nfs"`},
		{"dup mac", "c", func(o *Options) { o.Nodes[1].MAC = o.Nodes[0].MAC }, "share MAC"},
		{"install without card", "d", func(o *Options) { o.Default = Install }, "needs a built SD card image"},
		{"bad mac", "e", func(o *Options) { o.Nodes[0].MAC = net.HardwareAddr{1, 2} }, "want 6 bytes"},
		{"not a tree", "other", func(o *Options) {}, "is not a netboot tree"},
		{"bad port", "f", func(o *Options) { o.HTTPPort = 70000 }, "HTTP port 70000"},
		{"untrusted key", "g", func(o *Options) {
			k := updatetest.Key(1)
			o.Key, o.Board, o.Trusted = &k, "odroid-c2", []update.PublicKey{updatetest.Key(2).Public()}
		}, "is not among the 1 keys baked into the initramfs"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := baseOptions(t)
			c.mod(&o)
			dir := filepath.Join(tmp, c.dir)
			_, err := Write(dir, o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
			if c.dir != "other" {
				if _, err := os.Stat(dir); err == nil {
					t.Errorf("%s written despite the error", dir)
				}
			}
		})
	}
	ents, _ := os.ReadDir(tmp)
	if len(ents) != 1 {
		t.Errorf("left behind: %v", ents)
	}
	if _, err := os.Stat(filepath.Join(notTree, "precious")); err != nil {
		t.Error("existing directory touched")
	}
}

// fakeImage is an arm64 Image header (image_size with a BSS beyond the
// file) over compressible bytes.
func fakeImage(size int, imageSize uint64) []byte {
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 64; i < size; i += 3 {
		b[i] = byte(r.Uint32()) // compresses about as well as a kernel
	}
	binary.LittleEndian.PutUint64(b[16:], imageSize)
	copy(b[56:], "ARM\x64")
	return b
}

func bootScript(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, ScriptFile))
	if err != nil {
		t.Fatal(err)
	}
	_, payload, err := uboot.ParseImage(b)
	if err != nil {
		t.Fatal(err)
	}
	s, err := uboot.ScriptText(payload)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Every board gets the kernel its U-Boot boots: gzip'd with the unpack
// area and exact compressed size in the boot script, or the plain Image;
// the TFTP sizes its board file names; the initramfs compressed.
func TestWriteEveryBoardKernel(t *testing.T) {
	all, err := boards.All()
	if err != nil {
		t.Fatal(err)
	}
	kernel := fakeImage(4<<20, 6<<20)
	for _, b := range all {
		t.Run(b.Name, func(t *testing.T) {
			o := baseOptions(t)
			o.Kernel, o.UBoot, o.SoC = kernel, b.Netboot, b.SoC
			dir := filepath.Join(t.TempDir(), "nb")
			if _, err := Write(dir, o); err != nil {
				t.Fatal(err)
			}
			script := bootScript(t, dir)
			e := readMenu(t, dir, "pxelinux.cfg/01-00-1e-06-42-01-01").Entries[0]
			served, err := os.ReadFile(filepath.Join(dir, e.Kernel))
			if err != nil {
				t.Fatal(err)
			}
			switch b.Netboot.KernelCompression {
			case "gzip":
				if e.Kernel != KernelGzFile || compress.Sniff(served) != compress.Gzip {
					t.Fatalf("kernel %s (%q...) for a board whose U-Boot unpacks gzip", e.Kernel, served[:4])
				}
				for _, want := range []string{
					fmt.Sprintf("setenv kernel_comp_addr_r 0x%x\n", b.Netboot.KernelCompAddr),
					fmt.Sprintf("setenv kernel_comp_size 0x%x\n", len(served)),
				} {
					if !strings.Contains(script, want) {
						t.Errorf("boot script lacks %q:\n%s", want, script)
					}
				}
				z, _ := compress.NewReader(bytes.NewReader(served), compress.Gzip)
				if back, err := io.ReadAll(z); err != nil || !bytes.Equal(back, kernel) {
					t.Errorf("Image.gz unpacks to %d bytes (%v), not the kernel", len(back), err)
				}
				if len(served) >= len(kernel)/2 {
					t.Errorf("Image.gz is %d bytes of %d", len(served), len(kernel))
				}
				if _, err := os.Stat(filepath.Join(dir, KernelFile)); err == nil {
					t.Error("the plain Image is served too")
				}
			case "":
				if e.Kernel != KernelFile || !bytes.Equal(served, kernel) || strings.Contains(script, "kernel_comp") {
					t.Errorf("kernel %s, same bytes %v, script:\n%s", e.Kernel, bytes.Equal(served, kernel), script)
				}
			}
			for _, v := range []struct {
				name string
				n    int
			}{{"tftpblocksize", b.Netboot.TFTPBlockSize}, {"tftpwindowsize", b.Netboot.TFTPWindowSize}} {
				if has := strings.Contains(script, fmt.Sprintf("setenv %s %d\n", v.name, v.n)); has != (v.n > 0) {
					t.Errorf("%s %d: set in the script %v:\n%s", v.name, v.n, has, script)
				}
			}
			if !strings.Contains(script, "pxe get && pxe boot") {
				t.Errorf("script does not boot:\n%s", script)
			}
			initrd, _ := os.ReadFile(filepath.Join(dir, InitrdFile))
			if compress.Sniff(initrd) == compress.None {
				t.Error("initramfs served uncompressed")
			}
		})
	}
}

// The tree is the same bytes from the same inputs; an initramfs that is
// compressed already is served as it is; an unpack area the initramfs
// would reach is an error naming both.
func TestWriteCompressed(t *testing.T) {
	qemu, err := boards.Get("qemu-virt")
	if err != nil {
		t.Fatal(err)
	}
	o := baseOptions(t)
	o.Kernel, o.UBoot = fakeImage(4<<20, 6<<20), qemu.Netboot
	xzInitrd, err := compress.Bytes([]byte(strings.Repeat("cpio", 1000)), compress.XZ)
	if err != nil {
		t.Fatal(err)
	}
	o.Initrd = xzInitrd
	tmp := t.TempDir()
	var sums [2]string
	for i := range sums {
		dir := filepath.Join(tmp, fmt.Sprint(i))
		res, err := Write(dir, o)
		if err != nil {
			t.Fatal(err)
		}
		sums[i] = fileSum(t, res, KernelGzFile) + fileSum(t, res, ScriptFile)
		if got, _ := os.ReadFile(filepath.Join(dir, InitrdFile)); !bytes.Equal(got, xzInitrd) {
			t.Error("an xz initramfs was not served as it is")
		}
	}
	if sums[0] != sums[1] {
		t.Error("two writes from the same inputs differ")
	}
	o.Initrd = make([]byte, 0x10000000) // 256 MiB from 0x44000000 reaches 0x50000000
	o.Initrd[0] = 0x1f
	o.Initrd[1] = 0x8b
	if _, err := Write(filepath.Join(tmp, "big"), o); err == nil || !strings.Contains(err.Error(), "overlaps the initramfs") {
		t.Errorf("initramfs over the unpack area: %v", err)
	}
}
