// Package netboot writes the tree a netboot server serves to U-Boot's PXE
// flow: the kernel (gzip'd as Image.gz where the board's U-Boot unpacks
// it, boards.Netboot), device tree and initramfs (compressed),
// boot.scr.uimg (which the `dhcp` boot target fetches and sources; it
// sets U-Boot's TFTP block and window size and booti's unpack area, then
// runs `pxe get; pxe boot`),
// one pxelinux.cfg file per inventory node (01-<mac>) and the board's
// default files, and the images the two netboot modes fetch over HTTP:
//
//   - diskless: root.img, the btrfs root (Label "root", default subvolume
//     "@", the same layout as a card's root partition) with root.img.bmap;
//     nodeinit fetches it into RAM, checks it and mounts it (internal/node/netroot);
//   - install: node.img, the full SD card image with node.img.bmap;
//     nodeinit writes it to the node's card, checks it and reboots
//     (internal/node/netinstall).
//
// The tree is written into a temporary directory beside the output and
// renamed into place when complete.
package netboot

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/builder"
	"github.com/mkimage/mkimage/internal/atomicfile"
	"github.com/mkimage/mkimage/internal/bmap"
	"github.com/mkimage/mkimage/internal/build/btrfs"
	"github.com/mkimage/mkimage/internal/build/uboot"
	"github.com/mkimage/mkimage/internal/compress"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/update"
)

// Mode is how a node boots from the network.
type Mode string

const (
	// Diskless: the root is fetched over HTTP into RAM at every boot.
	Diskless Mode = "diskless"
	// Install: the SD image is written to the node's card, then it reboots.
	Install Mode = "install"
)

// ParseMode checks a mode name.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case Diskless, Install:
		return Mode(s), nil
	}
	return "", fmt.Errorf("netboot mode %q: want diskless or install", s)
}

// File names in the served tree.
const (
	ScriptFile = "boot.scr.uimg"
	KernelFile = "Image"
	// KernelGzFile is the kernel where the board's U-Boot unpacks gzip.
	KernelGzFile = "Image.gz"
	InitrdFile   = "initrd.img"
	RootImage    = "root.img"
	CardImage    = "node.img"
	BmapSuffix   = ".bmap"
	Manifest     = "netboot.json"
	defaultPort  = 80
)

// Kernel command line keys nodeinit reads in netboot mode. URLs with an
// empty host ("http://:80/root.img") mean the server that handed out the
// DHCP lease (its next-server address): the tree does not need to know
// the server's address, so one tree serves any provisioning network.
const (
	// KeyRoot is root=<URL of root.img>: the diskless root.
	KeyRoot = "root"
	// KeyRootSHA256 is the sha256 of the whole root image.
	KeyRootSHA256 = "netroot.sha256"
	// KeyInstall is netinstall=<URL of node.img>: write it to the card.
	KeyInstall = "netinstall"
	// KeyInstallSHA256 is the sha256 of the whole card image.
	KeyInstallSHA256 = "netinstall.sha256"
)

// Node is one inventory node.
type Node struct {
	Name string
	MAC  net.HardwareAddr
	Mode Mode // "": the default mode
}

// Options are the inputs of a netboot tree.
type Options struct {
	SoC         string   // for messages only
	PXEDefaults []string // the board's pxe_defaults
	Kernel      []byte   // raw arm64 Image
	Initrd      []byte   // served as it is when compressed, else gzip'd
	// UBoot is what the board's U-Boot does with a netbooted kernel:
	// the kernel's compression, TFTP sizes, load addresses.
	UBoot   boards.Netboot
	DTB     []byte // nil where firmware provides the tree
	DTBPath string // "vendor/board.dtb", with DTB
	// Cmdline is the card's kernel command line (console=... root=LABEL=root
	// rootwait); each mode replaces or adds its keys.
	Cmdline string

	// Root is the root tree; a diskless root image is written from it when
	// any node (or the default) is diskless.
	Root *fstree.Tree
	// RootHeadroom is free space in the diskless root (in RAM, sparse).
	RootHeadroom int64
	// Card is a built SD image (with Card+".bmap" beside it), needed
	// when any node (or the default) installs. It is moved into the tree.
	Card string

	Nodes []Node
	// Default is the mode of the default pxelinux files (nodes not in
	// the inventory and inventory nodes with no mode).
	Default Mode
	// HTTPPort is the port in the URLs on the command line (default 80).
	HTTPPort int
	Epoch    time.Time

	// Key, if set, signs the images the nodes fetch (images.json and
	// images.sig, see update.NetbootManifest); it must be one of
	// Trusted, the keys the builder baked into the initramfs
	// (Prepared.NetbootKeys), so the nodes booting this tree refuse
	// anything else. Board names the tree in the manifest.
	Key     *update.PrivateKey
	Trusted []update.PublicKey
	Board   string
}

// Modes reports which modes o needs.
func (o *Options) Modes() (diskless, install bool) {
	for _, m := range o.modes() {
		diskless = diskless || m == Diskless
		install = install || m == Install
	}
	return
}

func (o *Options) modes() []Mode {
	out := []Mode{o.Default}
	for _, n := range o.Nodes {
		if n.Mode != "" {
			out = append(out, n.Mode)
		}
	}
	return out
}

// File is one file of the tree, in the manifest.
type File struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// NodeEntry says which pxelinux file boots a node and how.
type NodeEntry struct {
	Name    string `json:"name"`
	MAC     string `json:"mac"`
	Mode    Mode   `json:"mode"`
	PXEFile string `json:"pxe_file"`
}

// Result is what Write wrote (also stored as netboot.json in the tree).
type Result struct {
	Dir      string          `json:"-"`
	Files    []File          `json:"files"`
	Nodes    []NodeEntry     `json:"nodes"`
	Defaults []string        `json:"defaults"`
	Cmdlines map[Mode]string `json:"cmdlines"`
	Default  Mode            `json:"default_mode"`
}

// Write writes the netboot tree to dir, which must not exist yet or be
// an earlier netboot tree (it is replaced as a whole).
func Write(dir string, o Options) (*Result, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	var res *Result
	err := atomicfile.ReplaceDir(dir, "a netboot tree", Manifest, func(tmp string) error {
		w := &writer{dir: tmp, res: &Result{Cmdlines: map[Mode]string{}, Default: o.Default}}
		res = w.res
		return w.write(&o)
	})
	if err != nil {
		return nil, err
	}
	res.Dir = dir
	return res, nil
}

func (o *Options) check() error {
	if len(o.Kernel) == 0 {
		return errors.New("netboot: no kernel Image")
	}
	if len(o.Initrd) == 0 {
		return errors.New("netboot: no initramfs")
	}
	if (o.DTB == nil) != (o.DTBPath == "") {
		return errors.New("netboot: device tree bytes and path must come together")
	}
	if o.Default == "" {
		o.Default = Diskless
	}
	if _, err := ParseMode(string(o.Default)); err != nil {
		return err
	}
	if o.Epoch.IsZero() {
		o.Epoch = time.Unix(0, 0).UTC()
	}
	if o.HTTPPort == 0 {
		o.HTTPPort = defaultPort
	}
	if o.HTTPPort < 0 || o.HTTPPort > 65535 {
		return fmt.Errorf("HTTP port %d: want 1-65535", o.HTTPPort)
	}
	seen := map[string]string{}
	for _, n := range o.Nodes {
		if _, err := uboot.PXEFileForMAC(n.MAC); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		if prev, ok := seen[n.MAC.String()]; ok {
			return fmt.Errorf("nodes %s and %s share MAC %s", prev, n.Name, n.MAC)
		}
		seen[n.MAC.String()] = n.Name
		if n.Mode != "" {
			if _, err := ParseMode(string(n.Mode)); err != nil {
				return fmt.Errorf("node %s: %w", n.Name, err)
			}
		}
	}
	diskless, install := o.Modes()
	if diskless && o.Root == nil {
		return errors.New("netboot: diskless mode needs a root tree")
	}
	if install && o.Card == "" {
		return errors.New("netboot: install mode needs a built SD card image")
	}
	return o.checkKey()
}

// checkKey refuses a signing key the nodes will not trust.
func (o *Options) checkKey() error {
	if o.Key == nil {
		return nil
	}
	pub := o.Key.Public()
	for _, k := range o.Trusted {
		if update.SameKey(k, pub) {
			return nil
		}
	}
	return fmt.Errorf("netboot: the signing key %s is not among the %d keys baked into the initramfs: the nodes would refuse the tree (sign with a key whose .pub is in --update-key)", pub, len(o.Trusted))
}

type writer struct {
	dir string
	res *Result
}

func (w *writer) put(name string, data []byte) error {
	p := filepath.Join(w.dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	w.res.Files = append(w.res.Files, File{Path: name, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])})
	return nil
}

// addFile records a file already in the tree and returns its sha256.
func (w *writer) addFile(name string) (string, error) {
	f, err := os.Open(filepath.Join(w.dir, filepath.FromSlash(name)))
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	w.res.Files = append(w.res.Files, File{Path: name, Size: n, SHA256: sum})
	return sum, nil
}

func (w *writer) write(o *Options) error {
	b, err := serveBoot(o)
	if err != nil {
		return err
	}
	script, err := uboot.PXEScript(b.env)
	if err != nil {
		return err
	}
	text, err := uboot.ScriptImage("mkimage netboot", script, o.Epoch)
	if err != nil {
		return err
	}
	if err := w.put(ScriptFile, text); err != nil {
		return err
	}
	if err := w.put(b.kernelFile, b.kernel); err != nil {
		return err
	}
	if err := w.put(InitrdFile, b.initrd); err != nil {
		return err
	}
	fdt := ""
	if o.DTB != nil {
		fdt = path.Join("dtbs", o.DTBPath)
		if err := w.put(fdt, o.DTB); err != nil {
			return err
		}
	}
	diskless, install := o.Modes()
	base := removeKey(strings.Fields(o.Cmdline), KeyRoot)
	if diskless {
		sum, err := w.rootImage(o)
		if err != nil {
			return err
		}
		w.res.Cmdlines[Diskless] = strings.Join(append(append([]string{}, base...),
			fmt.Sprintf("%s=http://:%d/%s", KeyRoot, o.HTTPPort, RootImage),
			KeyRootSHA256+"="+sum), " ")
	}
	if install {
		sum, err := w.cardImage(o)
		if err != nil {
			return err
		}
		// The card's own command line (root=LABEL=root) stays: after the
		// install the node boots from its card.
		w.res.Cmdlines[Install] = strings.Join([]string{o.Cmdline,
			fmt.Sprintf("%s=http://:%d/%s", KeyInstall, o.HTTPPort, CardImage),
			KeyInstallSHA256 + "=" + sum}, " ")
	}
	entry := func(m Mode) uboot.Entry {
		return uboot.Entry{Label: "mkimage-" + string(m), Kernel: b.kernelFile, Initrd: InitrdFile, FDT: fdt, Append: w.res.Cmdlines[m]}
	}
	for _, m := range []Mode{Diskless, Install} {
		if _, ok := w.res.Cmdlines[m]; ok {
			if err := entry(m).Validate(); err != nil {
				return err
			}
		}
	}
	for _, n := range o.Nodes {
		m := n.Mode
		if m == "" {
			m = o.Default
		}
		name, _ := uboot.PXEFileForMAC(n.MAC)
		if err := w.put(name, []byte(uboot.PXEConfig(entry(m)))); err != nil {
			return err
		}
		w.res.Nodes = append(w.res.Nodes, NodeEntry{Name: n.Name, MAC: n.MAC.String(), Mode: m, PXEFile: name})
	}
	for _, name := range uboot.PXEDefaultFiles(o.PXEDefaults) {
		if err := w.put(name, []byte(uboot.PXEConfig(entry(o.Default)))); err != nil {
			return err
		}
		w.res.Defaults = append(w.res.Defaults, name)
	}
	if o.Key != nil {
		if err := w.sign(o); err != nil {
			return err
		}
	}
	sort.Slice(w.res.Files, func(i, j int) bool { return w.res.Files[i].Path < w.res.Files[j].Path })
	js, err := json.MarshalIndent(w.res, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(w.dir, Manifest), append(js, '\n'), 0o644)
}

// bootFiles are the kernel and initramfs as served, and the variables
// the boot script sets for them.
type bootFiles struct {
	kernelFile     string
	kernel, initrd []byte
	env            []uboot.Setenv
}

// serveBoot compresses the kernel and initramfs for the wire: the kernel
// gzip'd where the board's booti unpacks it (into kernel_comp_addr_r,
// checked against everything else U-Boot holds; kernel_comp_size is the
// exact compressed size), the initramfs gzip'd unless it is compressed
// already (mkimage's own is xz).
func serveBoot(o *Options) (*bootFiles, error) {
	u := o.UBoot
	b := &bootFiles{kernelFile: KernelFile, kernel: o.Kernel, initrd: o.Initrd}
	if u.TFTPBlockSize > 0 {
		b.env = append(b.env, uboot.Setenv{Name: "tftpblocksize", Value: fmt.Sprint(u.TFTPBlockSize)})
	}
	if u.TFTPWindowSize > 0 {
		b.env = append(b.env, uboot.Setenv{Name: "tftpwindowsize", Value: fmt.Sprint(u.TFTPWindowSize)})
	}
	if compress.Sniff(o.Initrd) == compress.None {
		var err error
		if b.initrd, err = compress.Bytes(o.Initrd, compress.Gzip); err != nil {
			return nil, fmt.Errorf("netboot initramfs: %w", err)
		}
	}
	switch u.KernelCompression {
	case "":
		return b, nil
	case "gzip":
	default:
		return nil, fmt.Errorf("netboot: no kernel compression %q", u.KernelCompression)
	}
	packed, err := compress.Bytes(o.Kernel, compress.Gzip)
	if err != nil {
		return nil, fmt.Errorf("netboot kernel: %w", err)
	}
	if err := u.Unpack(int64(len(packed)), int64(len(o.Kernel)), kernelSpan(o.Kernel), int64(len(b.initrd))); err != nil {
		return nil, fmt.Errorf("%w (soc %s)", err, o.SoC)
	}
	b.kernelFile, b.kernel = KernelGzFile, packed
	b.env = append(b.env,
		uboot.Setenv{Name: "kernel_comp_addr_r", Value: fmt.Sprintf("0x%x", u.KernelCompAddr)},
		uboot.Setenv{Name: "kernel_comp_size", Value: fmt.Sprintf("0x%x", len(packed))})
	return b, nil
}

// kernelSpan is the memory an arm64 Image takes once booted: image_size
// from its header (with the BSS), or its length where that is 0 or the
// bytes are no Image (tests).
func kernelSpan(img []byte) int64 {
	if len(img) >= 64 && string(img[56:60]) == "ARM\x64" {
		if n := int64(binary.LittleEndian.Uint64(img[16:24])); n > int64(len(img)) {
			return n
		}
	}
	return int64(len(img))
}

// sign writes images.json, the sizes and sha256 of the files the nodes
// fetch over HTTP (the images and their maps), and images.sig. The boot
// files U-Boot fetches by TFTP are not in it: nothing on the node could
// check them before they run.
func (w *writer) sign(o *Options) error {
	m := update.NetbootManifest{Format: update.FormatVersion, Board: o.Board, Created: max(o.Epoch.Unix(), 0)}
	for _, f := range w.res.Files {
		switch strings.TrimSuffix(f.Path, BmapSuffix) {
		case RootImage, CardImage:
			m.Files = append(m.Files, update.NetbootItem{Name: f.Path, Size: f.Size, SHA256: f.SHA256})
		}
	}
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Name < m.Files[j].Name })
	doc, err := m.Marshal()
	if err != nil {
		return fmt.Errorf("netboot: %w", err)
	}
	if err := w.put(update.NetbootFile, doc); err != nil {
		return err
	}
	return w.put(update.NetbootSignature, update.Sign(doc, *o.Key))
}

// rootImage writes root.img (sparse) and its bmap, returns the sha256.
func (w *writer) rootImage(o *Options) (string, error) {
	bo := builder.RootFS(o.Epoch)
	bo.Headroom = o.RootHeadroom
	// Size 0: the smallest size that fits plus Headroom.
	p := filepath.Join(w.dir, RootImage)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer f.Close()
	r, err := btrfs.Write(f, o.Root, bo)
	if err != nil {
		return "", fmt.Errorf("diskless root: %w", err)
	}
	if err := f.Truncate(r.Size); err != nil {
		return "", err
	}
	ext := make([]bmap.Extent, len(r.Mapped))
	for i, e := range r.Mapped {
		ext[i] = bmap.Extent{Off: e.Offset, Len: e.Length}
	}
	m, err := bmap.Create(f, r.Size, ext)
	if err != nil {
		return "", err
	}
	// Ranges a node can check before it writes them.
	if err := m.Split(f, bmap.CheckedRange); err != nil {
		return "", err
	}
	data, err := m.Marshal()
	if err != nil {
		return "", err
	}
	if err := w.put(RootImage+BmapSuffix, data); err != nil {
		return "", err
	}
	return w.addFile(RootImage)
}

// cardImage moves (or copies) the built card image and its bmap in.
func (w *writer) cardImage(o *Options) (string, error) {
	for _, s := range []string{"", BmapSuffix} {
		src, dst := o.Card+s, filepath.Join(w.dir, CardImage+s)
		if _, err := os.Stat(src); err != nil {
			return "", fmt.Errorf("install mode: card image %s: %w (build it with mkimage build, which writes the .bmap beside it)", src, err)
		}
		if err := os.Link(src, dst); err != nil {
			if err := copyFile(src, dst); err != nil {
				return "", err
			}
		}
	}
	if err := splitMap(filepath.Join(w.dir, CardImage)); err != nil {
		return "", err
	}
	if _, err := w.addFile(CardImage + BmapSuffix); err != nil {
		return "", err
	}
	return w.addFile(CardImage)
}

// splitMap rewrites img's map (a new file: the old one may be a link to
// the build's) with ranges a node can check before it writes them.
func splitMap(img string) error {
	m, err := bmap.ReadFile(img + BmapSuffix)
	if err != nil {
		return fmt.Errorf("install mode: %w", err)
	}
	f, err := os.Open(img)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := m.Split(f, bmap.CheckedRange); err != nil {
		return fmt.Errorf("install mode: %s: %w", img, err)
	}
	dst := img + BmapSuffix
	if err := os.Remove(dst); err != nil {
		return err
	}
	return m.WriteFile(dst)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// removeKey drops every word key=... (or bare key) from words.
func removeKey(words []string, key string) []string {
	var out []string
	for _, w := range words {
		k, _, _ := strings.Cut(w, "=")
		if k != key {
			out = append(out, w)
		}
	}
	return out
}
