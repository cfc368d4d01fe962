package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/internal/build/bootblob/bootblobtest"
	"github.com/mkimage/mkimage/internal/build/rootfs"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/testenv"
)

// testRoot writes a small root tarball holding one of every kind of
// entry the image must keep exactly, and returns its path.
func testRoot(t *testing.T, dir string, extra ...tarEntry) string {
	t.Helper()
	big := make([]byte, 300<<10)
	rand.Read(big)
	mt := time.Unix(1700000000, 123456789)
	entries := []tarEntry{
		{h: tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}},
		{h: tar.Header{Name: "etc/hostname", Typeflag: tar.TypeReg, Mode: 0o644}, data: []byte("testnode\n")},
		{h: tar.Header{Name: "home/", Typeflag: tar.TypeDir, Mode: 0o755}},
		{h: tar.Header{Name: "home/user/", Typeflag: tar.TypeDir, Mode: 0o700, Uid: 1000, Gid: 1000}},
		{h: tar.Header{Name: "home/user/notes", Typeflag: tar.TypeReg, Mode: 0o600, Uid: 1000, Gid: 1000}, data: []byte("private")},
		{h: tar.Header{Name: "usr/", Typeflag: tar.TypeDir, Mode: 0o755}},
		{h: tar.Header{Name: "usr/bin/", Typeflag: tar.TypeDir, Mode: 0o755}},
		{h: tar.Header{Name: "usr/bin/suid", Typeflag: tar.TypeReg, Mode: 0o4755}, data: []byte("#!/bin/sh\n")},
		{h: tar.Header{Name: "usr/bin/big", Typeflag: tar.TypeReg, Mode: 0o755, PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", "SCHILY.xattr.user.note": "big one"}}, data: big},
		{h: tar.Header{Name: "usr/bin/hl1", Typeflag: tar.TypeReg, Mode: 0o755}, data: []byte("linked")},
		{h: tar.Header{Name: "usr/bin/hl2", Typeflag: tar.TypeLink, Linkname: "usr/bin/hl1"}},
		{h: tar.Header{Name: "usr/bin/sl", Typeflag: tar.TypeSymlink, Linkname: "../../etc/hostname"}},
		{h: tar.Header{Name: "dev/", Typeflag: tar.TypeDir, Mode: 0o755}},
		{h: tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}},
		{h: tar.Header{Name: "dev/sda", Typeflag: tar.TypeBlock, Mode: 0o660, Gid: 6, Devmajor: 8, Devminor: 0}},
		{h: tar.Header{Name: "run/", Typeflag: tar.TypeDir, Mode: 0o755}},
		{h: tar.Header{Name: "run/fifo", Typeflag: tar.TypeFifo, Mode: 0o644}},
	}
	entries = append(entries, extra...)
	path := filepath.Join(dir, "root.tar.gz")
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		h := e.h
		h.Format = tar.FormatPAX
		h.ModTime, h.AccessTime, h.ChangeTime = mt, mt, mt
		h.Size = int64(len(e.data))
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.data)
	}
	tw.Close()
	gz.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

type tarEntry struct {
	h    tar.Header
	data []byte
}

type sfdiskDump struct {
	PartitionTable struct {
		Label      string `json:"label"`
		ID         string `json:"id"`
		Partitions []struct {
			Node     string `json:"node"`
			Start    int64  `json:"start"`
			Size     int64  `json:"size"`
			Type     string `json:"type"`
			Bootable bool   `json:"bootable"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

func partitions(t *testing.T, img string) sfdiskDump {
	t.Helper()
	var d sfdiskDump
	if err := json.Unmarshal([]byte(tool(t, "sfdisk", "--json", img)), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// extract copies partition n (1-based) of img into its own file.
func extract(t *testing.T, img string, n int) string {
	t.Helper()
	d := partitions(t, img)
	p := d.PartitionTable.Partitions[n-1]
	out := filepath.Join(t.TempDir(), "p"+strconv.Itoa(n))
	tool(t, "dd", "if="+img, "of="+out, "bs=512", "skip="+strconv.FormatInt(p.Start, 10), "count="+strconv.FormatInt(p.Size, 10), "conv=sparse", "status=none")
	return out
}

// bootPathModules are drivers each board's boot devices need that no one
// listed by hand: found by the device-tree walk (issue: the SD slots wait
// for their regulators forever without them).
var bootPathModules = map[string][]string{
	"odroid-c2":    {"fixed", "gpio-regulator", "meson-gx-mmc", "dwmac-meson8b"},
	"macchiatobin": {"fixed", "mvmdio", "sfp", "mdio-i2c", "i2c-mv64xxx", "i2c-mux-pca954x"},
}

// TestImagePerBoard builds an image for every board from Debian's arm64
// kernel package and a small root, then lets the real tools judge it.
func TestImagePerBoard(t *testing.T) {
	testenv.Short(t)
	testenv.NeedTools(t, "sfdisk", "fsck.vfat", "mcopy", "btrfs")
	dir := t.TempDir()
	root := testRoot(t, dir)
	src, err := rootfs.Tarball(root, rootfs.TarOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Bootloaders of the shape each board's format wants, booting nothing.
	blobs := map[string][]byte{
		"odroid-c2":    bootblobtest.SDImage(t, 1),
		"macchiatobin": bootblobtest.Armada8K(bootblobtest.Random(2, 1<<20)),
	}

	for _, board := range []string{"qemu-virt", "odroid-c2", "macchiatobin"} {
		t.Run(board, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), board+".img")
			args := []string{"--board", board, "-o", img, "--rootfs", root}
			blob := blobs[board]
			if blob != nil {
				blobPath := filepath.Join(dir, board+"-blob.bin")
				os.WriteFile(blobPath, blob, 0o644)
				args = append(args, "--bootloader", blobPath)
			}
			mustRun(t, args...)

			// Partitions where the board says: p1 FAT32 at 4 MiB,
			// bootable; p2 Linux on a 4 MiB boundary.
			d := partitions(t, img)
			ps := d.PartitionTable.Partitions
			if d.PartitionTable.Label != "dos" || len(ps) != 2 {
				t.Fatalf("sfdisk: %+v", d)
			}
			if ps[0].Start != 8192 || !ps[0].Bootable || ps[0].Type != "c" || ps[1].Type != "83" || ps[1].Start%8192 != 0 {
				t.Fatalf("partitions not as planned: %+v", ps)
			}

			// Bootloader bytes where the board rule puts them, the table
			// intact between them.
			data, _ := os.ReadFile(img)
			switch board {
			case "odroid-c2":
				if !bytes.Equal(data[:440], blob[:440]) || !bytes.Equal(data[512:len(blob)], blob[512:]) {
					t.Fatal("odroid-c2: blob bytes not at 0..439 and 512..")
				}
			case "macchiatobin":
				if !bytes.Equal(data[512:512+len(blob)], blob) {
					t.Fatal("macchiatobin: blob does not start at byte 512")
				}
			}
			if data[510] != 0x55 || data[511] != 0xaa {
				t.Fatal("MBR signature overwritten")
			}

			// p1: fsck clean, files read back equal.
			p1 := extract(t, img, 1)
			tool(t, "fsck.vfat", "-n", p1)
			bootDir := t.TempDir()
			tool(t, "mcopy", "-s", "-n", "-i", p1, "::/", bootDir)
			ext, _ := os.ReadFile(filepath.Join(bootDir, "extlinux/extlinux.conf"))
			if !strings.Contains(string(ext), "root=LABEL=root") || !strings.Contains(string(ext), "initrd /initrd.img") {
				t.Fatalf("extlinux.conf:\n%s", ext)
			}
			if _, err := os.Stat(filepath.Join(bootDir, "Image")); err != nil {
				t.Fatal(err)
			}
			if board == "odroid-c2" {
				// The DTB on the card carries the TF_IO fix-up, as dtc
				// reads it: GPIOAO_3 open drain (flags 0x06).
				testenv.NeedTools(t, "dtc")
				dts := tool(t, "dtc", "-q", "-I", "dtb", "-O", "dts", filepath.Join(bootDir, "dtbs/amlogic/meson-gxbb-odroidc2.dtb"))
				tfio := dts[strings.Index(dts, "gpio-regulator-tf_io {"):]
				tfio = tfio[:strings.Index(tfio, "};")]
				if !regexp.MustCompile(`gpios = <0x[0-9a-f]+ 0x03 0x06>;`).MatchString(tfio) {
					t.Errorf("TF_IO on the card is not open drain:\n%s", tfio)
				}
			}
			// The initramfs carries the drivers of the board's boot path
			// (regulators, MDIO, SFP), found in its device tree.
			if mods := bootPathModules[board]; len(mods) > 0 {
				testenv.NeedTools(t, "xz", "cpio")
				list := tool(t, "sh", "-c", "xz -dc "+filepath.Join(bootDir, "initrd.img")+" | cpio -t --quiet")
				for _, m := range mods {
					if !strings.Contains(list, "/"+m+".ko") {
						t.Errorf("initramfs lacks %s.ko", m)
					}
				}
			}

			// p2: btrfs check clean; the root reads back equal to the
			// tarball, owners, modes, times, xattrs and links included.
			p2 := extract(t, img, 2)
			tool(t, "btrfs", "check", "--readonly", p2)
			got := readBack(t, p2)
			assertSubtree(t, src, got)
		})
	}
}

// readBack returns the tree of a btrfs image as the kernel sees it (as
// root, through a read-only loop mount) or as btrfs restore writes it.
func readBack(t *testing.T, fsImg string) *fstree.Tree {
	t.Helper()
	mnt := t.TempDir()
	if os.Geteuid() == 0 {
		tool(t, "mount", "-o", "ro,loop", fsImg, mnt)
		t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	} else {
		tool(t, "btrfs", "restore", "-m", "-S", "-x", fsImg, mnt)
	}
	tr, err := rootfs.HostDir(mnt, rootfs.HostOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// assertSubtree checks that every entry of src is in got, equal.
func assertSubtree(t *testing.T, src, got *fstree.Tree) {
	t.Helper()
	pruned := fstree.New(time.Unix(0, 0))
	pruned.Root = prune(src.Root, got.Root)
	diffs, err := fstree.Diff(src, pruned, fstree.DiffOptions{IgnoreAtime: true, IgnoreCtime: true, IgnoreRoot: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) > 0 {
		t.Fatalf("root read back differs from the source (%d differences):\n%s", len(diffs), strings.Join(diffs, "\n"))
	}
}

// prune returns a copy of directory g keeping only the names s has.
func prune(s, g *fstree.Inode) *fstree.Inode {
	if !s.IsDir() || !g.IsDir() {
		return g
	}
	c := *g
	c.Children = map[string]*fstree.Inode{}
	for name, sc := range s.Children {
		if gc, ok := g.Children[name]; ok {
			c.Children[name] = prune(sc, gc)
		}
	}
	return &c
}

// TestBootPath runs `mkimage bootpath` for every board with a device tree
// on the card against Debian's current kernel: no device on the boot path
// is without a driver.
func TestBootPath(t *testing.T) {
	testenv.Short(t)
	all, err := boards.All()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range all {
		if b.DTB == "" {
			continue
		}
		t.Run(b.Name, func(t *testing.T) {
			out := mustRun(t, "bootpath", "--board", b.Name, "--json", "-q")
			var res struct {
				Closure struct {
					Devices []struct{ Path, Kind string } `json:"devices"`
				} `json:"closure"`
				Modules  []string `json:"modules"`
				Watchdog []struct {
					Path    string
					Matched string
					Modules []string
				} `json:"watchdog"`
			}
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for _, d := range res.Closure.Devices {
				if d.Kind == "missing" || d.Kind == "disabled" {
					t.Errorf("%s: %s", d.Path, d.Kind)
				}
			}
			t.Logf("%s: %d devices, modules %v", b.Name, len(res.Closure.Devices), res.Modules)
			// The board's watchdog module drives a device of its DTB
			// (the build fails otherwise; this shows which).
			if len(res.Watchdog) == 0 {
				t.Errorf("watchdog %s drives no device of %s", b.Watchdog, b.DTB)
			}
			for _, w := range res.Watchdog {
				t.Logf("%s: watchdog %v drives %s (%s)", b.Name, w.Modules, w.Path, w.Matched)
			}
			table := mustRun(t, "bootpath", "--board", b.Name, "-q")
			if !strings.Contains(table, "NODE") || !strings.Contains(table, "modules for the initramfs") {
				t.Errorf("table:\n%s", table)
			}
		})
	}
}
