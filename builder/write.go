package builder

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/mkimage/mkimage/internal/atomicfile"
	"github.com/mkimage/mkimage/internal/ondisk"

	"github.com/mkimage/mkimage/internal/bmap"
	"github.com/mkimage/mkimage/internal/build/disk"
	"github.com/mkimage/mkimage/internal/build/fat"
	"github.com/mkimage/mkimage/internal/build/progress"
	"github.com/mkimage/mkimage/internal/compress"
)

// Result is what a build wrote.
type Result struct {
	Plan     *Plan
	Image    string
	SHA256   string
	Manifest string
	Bmap     string
	Extra    []string // compressed image, when asked for
	Mapped   int64    // bytes in the block map
	Duration time.Duration
	Timings  Timings // every stage, resolving included
}

// Manifest is written beside the image as IMAGE.manifest.json.
type Manifest struct {
	Tool      string      `json:"tool"`
	Version   string      `json:"version"`
	Board     string      `json:"board"`
	Epoch     int64       `json:"source_date_epoch"`
	Image     string      `json:"image"`
	Size      int64       `json:"size"`
	SHA256    string      `json:"sha256"`
	Kernel    string      `json:"kernel_version"`
	Cmdline   string      `json:"cmdline"`
	VersionID string      `json:"version_id,omitempty"` // updatable images: the version id, as its bundle names it
	Layout    disk.Layout `json:"layout"`
	Root      RootPlan    `json:"root"`
	Inputs    []Input     `json:"inputs"`
	Warnings  []string    `json:"warnings,omitempty"`
	// Timings (with Options.Timings) are the stages up to the checksum.
	Timings Timings `json:"timings,omitempty"`
}

// extent is a written byte range of the image.
type extent struct{ off, len int64 }

func write(ctx context.Context, o *Options, in *inputs, p *Plan) (*Result, error) {
	start := time.Now()
	img, err := atomicfile.Create(o.Output, 0o644)
	if err != nil {
		return nil, err
	}
	defer img.Abort()
	if err := img.Truncate(p.Layout.Size); err != nil {
		return nil, fmt.Errorf("output %s: %w", o.Output, err)
	}
	var mapped []extent
	ids := idsFor(in, p)

	// Sector 0: bootloader bytes first, then the table over 440..511.
	if in.blob != nil {
		rs, err := disk.WriteBootloader(img, in.board, in.blobName, in.blob)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			mapped = append(mapped, extent{r.Offset, r.Length})
		}
		logf(o, "bootloader %s placed (%d bytes)", in.blobName, len(in.blob))
	}
	r, err := ondisk.WriteMBR(img, p.Layout.MBR(ids.disk))
	if err != nil {
		return nil, fmt.Errorf("partition table: %w", err)
	}
	mapped = append(mapped, extent{r.Offset, r.Length})

	bootPart := p.Layout.Boot()
	logf(o, "boot partition: FAT32 %s at %s", human(bootPart.Size), human(bootPart.Start))
	tm := append(Timings(nil), *in.timings...)
	var frs []fat.Range
	err = tm.time("write boot partition", func() error {
		return showBytes(o, "boot partition", func(report func(done, total int64)) (err error) {
			frs, err = fat.Write(io.NewOffsetWriter(img, bootPart.Start), p.boot, fat.Options{
				Size: bootPart.Size, Label: bootLabel, VolumeID: ids.fat, HiddenSectors: uint32(bootPart.Start / 512),
				Progress: report,
			})
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("boot partition: %w", err)
	}
	for _, r := range frs {
		mapped = append(mapped, extent{bootPart.Start + r.Offset, r.Length})
	}

	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rootPart := p.Layout.Root()
	logf(o, "root partition: btrfs %s at %s (%s backend)", human(rootPart.Size), human(rootPart.Start), o.Backend)
	var rrs []extent
	err = tm.time("write root partition", func() error {
		return showBytes(o, "root partition", func(report func(done, total int64)) (err error) {
			rrs, err = rootWriterFor(o, in).write(ctx, io.NewOffsetWriter(img, rootPart.Start), rootPart.Size, in.root, ids.root, report)
			if err == nil {
				err = img.Sync()
			}
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("root partition: %w", err)
	}
	for _, r := range rrs {
		mapped = append(mapped, extent{rootPart.Start + r.off, r.len})
	}

	warnings := p.Warnings
	if o.Preconfigure {
		if err := tm.time("preconfigure", func() error { return preconfigure(ctx, o, in, p, img.Name()) }); err != nil {
			return nil, fmt.Errorf("--preconfigure: %w", err)
		}
		warnings = append(warnings[:len(warnings):len(warnings)], preconfigureWarning)
	}
	var imgSum string
	err = tm.time("checksum", func() error {
		return showBytes(o, "checksum", func(report func(done, total int64)) error {
			st, err := img.Stat()
			if err != nil {
				return err
			}
			h := sha256.New()
			if _, err := io.Copy(h, progress.Reading(io.NewSectionReader(img.File, 0, st.Size()), st.Size(), report)); err != nil {
				return fmt.Errorf("checksum of %s: %w", img.Name(), err)
			}
			imgSum = hex.EncodeToString(h.Sum(nil))
			return nil
		})
	})
	if err != nil {
		return nil, err
	}

	// The block map and manifest go out first, the image last: whoever
	// sees the image under its final name also finds its map.
	var bm *bmap.Map
	if o.Preconfigure {
		// QEMU wrote where it liked: map the final image's data.
		bm, err = bmap.FromFile(img.File)
	} else {
		bm, err = bmap.Create(img, p.Layout.Size, bmapExtents(mapped))
	}
	if err != nil {
		return nil, fmt.Errorf("block map: %w", err)
	}
	bmData, err := bm.Marshal()
	if err != nil {
		return nil, err
	}
	man := Manifest{
		Tool: "mkimage", Version: o.Version, Board: p.Board, Epoch: o.Epoch.Unix(),
		Image: o.Output, Size: p.Layout.Size, SHA256: imgSum, Kernel: p.Kernel, Cmdline: p.Cmdline, VersionID: p.Version,
		Layout: p.Layout, Root: p.Root, Inputs: p.Inputs, Warnings: warnings,
	}
	if o.Timings {
		// Only when asked: times differ from run to run, and the
		// manifest is otherwise the same for the same inputs.
		man.Timings = tm
	}
	manData, _ := json.MarshalIndent(man, "", "  ")
	if err := atomicfile.WriteFile(p.Bmap, bmData, 0o644); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(p.Manifest, append(manData, '\n'), 0o644); err != nil {
		os.Remove(p.Bmap)
		return nil, err
	}
	if err := img.Commit(); err != nil {
		os.Remove(p.Bmap)
		os.Remove(p.Manifest)
		return nil, err
	}
	res := &Result{Plan: p, Image: o.Output, SHA256: imgSum, Manifest: p.Manifest, Bmap: p.Bmap, Mapped: bm.MappedBytes(), Timings: tm}
	if o.Compress != "" {
		k, err := compress.ParseKind(o.Compress)
		if err != nil {
			return nil, err
		}
		dst := o.Output + "." + o.Compress
		logf(o, "compressing to %s", dst)
		err = res.Timings.time("compress", func() error {
			return showBytes(o, "compressing", func(report func(done, total int64)) error {
				return compress.CompressFileProgress(o.Output, dst, k, report)
			})
		})
		if err != nil {
			return nil, err
		}
		res.Extra = append(res.Extra, dst)
	}
	res.Duration = time.Since(start)
	logf(o, "wrote %s (%s, %s mapped) in %.1fs", o.Output, human(p.Layout.Size), human(res.Mapped), res.Duration.Seconds())
	return res, nil
}

// showBytes runs step, which reports its bytes written (or read) of
// their total, and shows how far it got on o.Log as "mkimage: LABEL: ..."
// (a bar on a terminal, a line every few seconds elsewhere).
func showBytes(o *Options, label string, step func(report func(done, total int64)) error) error {
	var l progress.Latest
	m := progress.Start(o.Log, progress.Options{Label: "mkimage: " + label, Watch: l.Report})
	defer m.Stop()
	return step(l.SetBytes)
}

func bmapExtents(m []extent) []bmap.Extent {
	sort.Slice(m, func(i, j int) bool { return m[i].off < m[j].off })
	out := make([]bmap.Extent, 0, len(m))
	for _, e := range m {
		out = append(out, bmap.Extent{Off: e.off, Len: e.len})
	}
	return out
}

// ids are the identifiers written into the image, all derived from the
// build's inputs so the same inputs give the same bytes.
type ids struct {
	disk uint32
	fat  uint32
	root []byte
}

func idsFor(in *inputs, p *Plan) ids {
	h := sha256.New()
	for _, i := range in.list {
		fmt.Fprintf(h, "%s\x00%s\x00", i.Kind, i.SHA256)
	}
	fmt.Fprintf(h, "%s\x00%s\x00%d", p.Board, p.Cmdline, p.Layout.Size)
	seed := h.Sum(nil)
	return ids{
		disk: ondisk.DiskID(seed),
		fat:  binary.LittleEndian.Uint32(seed[4:8]) | 1,
		root: seed,
	}
}
