package builder

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/mkimage/mkimage/internal/ondisk"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/internal/build/disk"
	"github.com/mkimage/mkimage/internal/build/fat"
)

// Inspection is what `mkimage inspect` reports of an image.
type Inspection struct {
	Image     string      `json:"image"`
	Disk      disk.Report `json:"disk"`
	BootInfo  *BootInfo   `json:"boot_info,omitempty"`
	BootFiles []fat.Entry `json:"boot_files,omitempty"`
	Problems  []string    `json:"problems,omitempty"`
}

// Inspect reads an image's partition table, the bootloader regions of its
// board (named, or found in the boot partition's mkimage.json) and the
// boot partition's files. Damage is reported, not fatal.
func Inspect(path, boardName string) (*Inspection, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if st.Mode()&os.ModeDevice != 0 {
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			return nil, err
		}
	}
	ins := &Inspection{Image: path}
	rep, err := disk.Inspect(f, size, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(rep.Partitions) > 0 && rep.Partitions[0].Type == ondisk.TypeFAT32LBA {
		p := rep.Partitions[0]
		fs, err := fat.Open(io.NewSectionReader(f, p.Start, p.Size), p.Size)
		if err != nil {
			ins.Problems = append(ins.Problems, fmt.Sprintf("boot partition: %v", err))
		} else {
			if ins.BootFiles, err = fs.List(); err != nil {
				ins.Problems = append(ins.Problems, fmt.Sprintf("boot partition: %v", err))
			}
			if data, err := fs.ReadFile(bootInfo); err == nil {
				var bi BootInfo
				if json.Unmarshal(data, &bi) == nil {
					ins.BootInfo = &bi
				}
			}
		}
	}
	if boardName == "" && ins.BootInfo != nil {
		boardName = ins.BootInfo.Board
	}
	if boardName != "" {
		b, err := boards.Get(boardName)
		if err != nil {
			return nil, err
		}
		if rep, err = disk.Inspect(f, size, b); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	ins.Disk = rep
	return ins, nil
}

// Print writes the inspection for people.
func (ins *Inspection) Print(w io.Writer) {
	r := ins.Disk
	fmt.Fprintf(w, "image:     %s (%s)\n", ins.Image, human(r.Size))
	mbr := "intact"
	if !r.SignatureOK {
		mbr = "BROKEN (no 0x55AA signature)"
	}
	fmt.Fprintf(w, "MBR:       %s, disk id %s\n", mbr, r.DiskID)
	if r.Board != "" {
		fmt.Fprintf(w, "board:     %s\n", r.Board)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PART\tBOOT\tTYPE\tSTART\tSIZE\tALIGNED")
	for _, p := range r.Partitions {
		boot := ""
		if p.Bootable {
			boot = "*"
		}
		fmt.Fprintf(tw, "p%d\t%s\t%s\t%d\t%s\t%v\n", p.Number, boot, p.TypeName, p.Start, human(p.Size), p.Aligned)
	}
	tw.Flush()
	if len(r.Bootloader) > 0 {
		fmt.Fprintln(w, "bootloader regions:")
		for _, g := range r.Bootloader {
			state := "empty"
			if g.NonZero {
				state = fmt.Sprintf("data up to byte %d", g.DataEnd)
			}
			fmt.Fprintf(w, "  disk %d..%d (blob from %d): %s, sha256 %s\n", g.Offset, g.Offset+g.Length, g.From, state, g.SHA256[:16])
		}
	}
	if ins.BootInfo != nil {
		fmt.Fprintf(w, "kernel:    %s, cmdline %q\n", ins.BootInfo.Version, ins.BootInfo.Cmdline)
	}
	if len(ins.BootFiles) > 0 {
		fmt.Fprintln(w, "boot partition files:")
		for _, e := range ins.BootFiles {
			if !e.Dir {
				fmt.Fprintf(w, "  %-40s %10d\n", e.Path, e.Size)
			}
		}
	}
	for _, p := range append(append([]string{}, r.Problems...), ins.Problems...) {
		fmt.Fprintf(w, "problem:   %s\n", p)
	}
}
