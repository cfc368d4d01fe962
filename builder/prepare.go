package builder

import (
	"context"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/update"
)

// Prepared is what a node boots, resolved but not written to a disk:
// what netboot serves and what a full image is made of.
type Prepared struct {
	Board   *boards.Board
	Version string // kernel version
	Kernel  []byte // raw arm64 Image
	Initrd  []byte // initramfs (cpio.xz)
	DTB     []byte // the board's device tree; nil where firmware has one
	// Cmdline is the kernel command line a card image boots with
	// (root=LABEL=root ...); netboot replaces the root= part.
	Cmdline string
	Root    *fstree.Tree
	Inputs  []Input
	// VersionID is an updatable image's version ("" otherwise).
	VersionID string
	// NetbootKeys are the keys baked into the initramfs for a signed
	// netboot tree (Options.NetbootKeys).
	NetbootKeys []update.PublicKey

	// What Plan and Write need: the inputs are resolved once, whatever is
	// made of them (an image, a dry run, a netboot tree and its card
	// image).
	o  Options
	in *inputs
}

// Plan returns the plan of an image of the prepared inputs at output.
func (p *Prepared) Plan(output string) (*Plan, error) {
	o := p.o
	o.Output = output
	return makePlan(&o, p.in)
}

// Write builds the image at output (with its .bmap and manifest).
func (p *Prepared) Write(ctx context.Context, output string) (*Result, error) {
	o := p.o
	o.Output = output
	plan, err := makePlan(&o, p.in)
	if err != nil {
		return nil, err
	}
	return write(ctx, &o, p.in, plan)
}

// Prepare resolves every input of o (fetching what is missing, building
// the initramfs) and returns the boot artifacts and root tree.
func Prepare(ctx context.Context, o Options) (*Prepared, error) {
	if err := o.fill(); err != nil {
		return nil, err
	}
	in, err := resolve(ctx, &o)
	if err != nil {
		return nil, err
	}
	b := in.board
	p := &Prepared{
		Board: b, Version: in.kernel.Version, Kernel: in.kernel.Image, Initrd: in.initrd,
		Cmdline: in.cmdline, Root: in.root, VersionID: in.version, NetbootKeys: in.netbootPub, Inputs: in.list, o: o, in: in,
	}
	if b.DTB != "" {
		p.DTB = in.dtb
	}
	return p, nil
}
