package builder

import (
	"encoding/json"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/internal/build/debroot"
	"github.com/mkimage/mkimage/internal/build/disk"
	"github.com/mkimage/mkimage/internal/build/uboot"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/node/versions"
)

// Boot partition file names. The kernel, initramfs and boot
// configuration live on FAT because U-Boot cannot read btrfs in common
// builds.
const (
	bootKernel    = "Image"
	bootInitrd    = "initrd.img"
	bootExtlinux  = "extlinux/extlinux.conf"
	bootScript    = "boot.scr"
	bootInfo      = "mkimage.json"
	rootLabel     = "root"
	bootLabel     = "BOOT"
	rootSubvolume = "@"
)

// rootSubvolumes are the nested subvolumes every node has: snapshots of
// the root go to .snapshots, LXC containers live apart from the root so
// its snapshots do not include them.
var rootSubvolumes = []string{".snapshots", "var/lib/lxc"}

// Plan is what a build will write, known before anything is written.
type Plan struct {
	Board    string      `json:"board"`
	Kernel   string      `json:"kernel_version"`
	Output   string      `json:"output"`
	Bmap     string      `json:"bmap"`
	Manifest string      `json:"manifest"`
	Layout   disk.Layout `json:"layout"`
	Cmdline  string      `json:"cmdline"`
	Version  string      `json:"version_id,omitempty"` // updatable images: the version id
	Boot     []PlanFile  `json:"boot_files"`
	Root     RootPlan    `json:"root"`
	Inputs   []Input     `json:"inputs"`
	Warnings []string    `json:"warnings,omitempty"`

	boot *fstree.Tree
}

// PlanFile is one file of the boot partition.
type PlanFile struct {
	Path string `json:"path"`
	Size int64  `json:"size"`
}

// RootPlan describes the root filesystem.
type RootPlan struct {
	Backend    string   `json:"backend"`
	Size       int64    `json:"size"`
	MinSize    int64    `json:"min_size"`
	Entries    int      `json:"entries"`
	Inodes     int      `json:"inodes"`
	DataBytes  int64    `json:"data_bytes"`
	Subvolume  string   `json:"default_subvolume,omitempty"`
	Subvolumes []string `json:"subvolumes,omitempty"`
	// SlimFilters are the dpkg path filters a --slim Debian root was
	// unpacked with and keeps (debroot.SlimConfig).
	SlimFilters []string `json:"slim_filters,omitempty"`
}

// BootInfo is written to the boot partition as mkimage.json: it tells
// `mkimage qemu` and `inspect` which board and files the image has.
type BootInfo struct {
	Board   string `json:"board"`
	Kernel  string `json:"kernel"`
	Initrd  string `json:"initrd"`
	DTB     string `json:"dtb,omitempty"`
	Cmdline string `json:"cmdline"`
	Version string `json:"kernel_version"`
}

func makePlan(o *Options, in *inputs) (*Plan, error) {
	b := in.board
	p := &Plan{
		Board:    b.Name,
		Kernel:   in.kernel.Version,
		Output:   o.Output,
		Bmap:     o.Output + ".bmap",
		Manifest: o.Output + ".manifest.json",
		Inputs:   in.list,
		Warnings: in.warnings,
	}
	p.Cmdline = in.cmdline
	p.Version = in.version

	boot, err := bootTree(o, in, p.Cmdline)
	if in.version != "" {
		boot, err = versionedBoot(in, in.version, o.Epoch)
	}
	if err != nil {
		return nil, err
	}
	p.boot = boot
	boot.Walk(func(fp string, n *fstree.Inode) error {
		if n.Type() == fstree.ModeRegular {
			p.Boot = append(p.Boot, PlanFile{Path: fp, Size: n.Size()})
		}
		return nil
	})

	rw := rootWriterFor(o, in)
	min, err := rw.minSize(in.root)
	if err != nil {
		return nil, fmt.Errorf("root filesystem: %w", err)
	}
	st := in.root.Stats()
	p.Root = RootPlan{Backend: o.Backend, MinSize: min, Entries: st.Entries, Inodes: st.Inodes, DataBytes: st.DataBytes}
	switch {
	case in.version != "":
		p.Root.Subvolumes = []string{versions.RootsDir + "/" + in.version + " (read-only, received)"}
	case o.Backend == "native":
		p.Root.Subvolume, p.Root.Subvolumes = rootSubvolume, rootSubvolumes
	}
	if o.Slim {
		for _, f := range debroot.SlimFilters {
			p.Root.SlimFilters = append(p.Root.SlimFilters, f.String())
		}
	}
	const align = 4 << 20
	if o.RootSize > 0 {
		if o.RootSize < min {
			return nil, fmt.Errorf("--root-size %s is too small: the root filesystem needs at least %s (%d bytes); raise --root-size or leave it out for content plus headroom", human(o.RootSize), human(min), min)
		}
		p.Root.Size = o.RootSize / align * align
		if p.Root.Size < min {
			p.Root.Size += align
		}
	} else {
		p.Root.Size = (min + o.Headroom + align - 1) / align * align
	}
	p.Layout, err = disk.Plan(b, o.BootSize, p.Root.Size)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// cmdline is the kernel command line of a card image. The root is found
// by its label: cards cloned from one image share disk id, PARTUUIDs and
// fsid until first boot makes them unique, and the label stays right
// through that.
func cmdline(b *boards.Board) string {
	args := append([]string{"console=" + b.Console, "root=LABEL=" + rootLabel}, b.Cmdline...)
	return strings.Join(args, " ")
}

// putFile puts data at p in tree (mode 0644, time t), making its
// directories.
func putFile(tree *fstree.Tree, p string, data []byte, t time.Time) error {
	return putInode(tree, p, fstree.NewFile(0o644, data, t), t)
}

// putInode puts n at p in tree, making its directories (time t).
func putInode(tree *fstree.Tree, p string, n *fstree.Inode, t time.Time) error {
	if _, err := tree.MkdirAll(path.Dir(p), t); err != nil {
		return err
	}
	return tree.Put(p, n)
}

// bootTree is the boot partition's content: kernel, device tree,
// initramfs, extlinux.conf, boot.scr and mkimage.json.
func bootTree(o *Options, in *inputs, cmdline string) (*fstree.Tree, error) {
	t := o.Epoch
	boot := fstree.New(t)
	put := func(p string, data []byte) error { return putFile(boot, p, data, t) }
	entry := uboot.Entry{Label: "mkimage", Kernel: "/" + bootKernel, Initrd: "/" + bootInitrd, Append: cmdline}
	info := BootInfo{Board: in.board.Name, Kernel: bootKernel, Initrd: bootInitrd, Cmdline: cmdline, Version: in.kernel.Version}
	if d := in.board.DTB; d != "" {
		if err := put("dtbs/"+d, in.dtb); err != nil {
			return nil, err
		}
		entry.FDT = "/dtbs/" + d
		info.DTB = "dtbs/" + d
	}
	if err := put(bootKernel, in.kernel.Image); err != nil {
		return nil, err
	}
	if err := put(bootInitrd, in.initrd); err != nil {
		return nil, err
	}
	if err := put(bootExtlinux, []byte(uboot.Extlinux(entry))); err != nil {
		return nil, err
	}
	script, err := uboot.BootScript(entry)
	if err != nil {
		return nil, err
	}
	img, err := uboot.ScriptImage("mkimage boot", script, t)
	if err != nil {
		return nil, err
	}
	if err := put(bootScript, img); err != nil {
		return nil, err
	}
	js, _ := json.MarshalIndent(info, "", "  ")
	if err := put(bootInfo, append(js, '\n')); err != nil {
		return nil, err
	}
	return boot, nil
}

// Print writes the plan for people.
func (p *Plan) Print(w io.Writer) {
	fmt.Fprintf(w, "board:    %s\nkernel:   %s\ncmdline:  %s\noutput:   %s (+ .bmap, .manifest.json)\n", p.Board, p.Kernel, p.Cmdline, p.Output)
	fmt.Fprintf(w, "disk:     %s\n", human(p.Layout.Size))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  PART\tTYPE\tSTART\tSIZE\tCONTENT")
	for _, part := range p.Layout.Partitions {
		content := "FAT32 boot (" + bootLabel + ")"
		if part.Number == 2 {
			content = fmt.Sprintf("btrfs root (%s, %s backend, %d entries, %s data)", rootLabel, p.Root.Backend, p.Root.Entries, human(p.Root.DataBytes))
		}
		fmt.Fprintf(tw, "  p%d\t0x%02x\t%s\t%s\t%s\n", part.Number, part.Type, human(part.Start), human(part.Size), content)
	}
	tw.Flush()
	if p.Root.Subvolume != "" {
		fmt.Fprintf(w, "root:     default subvolume %s, nested %s\n", p.Root.Subvolume, strings.Join(p.Root.Subvolumes, ", "))
	}
	if p.Version != "" {
		fmt.Fprintf(w, "version:  %s (updatable: root %s, boot files under v/%s/, counting boot.scr)\n", p.Version, strings.Join(p.Root.Subvolumes, ", "), p.Version)
	}
	if len(p.Root.SlimFilters) > 0 {
		fmt.Fprintf(w, "slim:     no man pages, info, docs (but copyright) or non-English translations: %d dpkg path filters, kept in /%s\n", len(p.Root.SlimFilters), debroot.SlimConfig)
	}
	fmt.Fprintln(w, "boot files:")
	files := append([]PlanFile(nil), p.Boot...)
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	for _, f := range files {
		fmt.Fprintf(w, "  %-40s %10d\n", f.Path, f.Size)
	}
	fmt.Fprintln(w, "inputs:")
	for _, in := range p.Inputs {
		fmt.Fprintf(w, "  %-10s %s  %s %s\n", in.Kind, in.SHA256[:12], in.Path, in.Note)
	}
	for _, warn := range p.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
}

func human(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
