package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/build/bootblob/bootblobtest"
	"github.com/mkimage/mkimage/internal/testenv"
)

func sha(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// TestReproducible: two builds with the same inputs and SOURCE_DATE_EPOCH
// give byte-identical images, block maps and manifests (output names
// aside).
func TestReproducible(t *testing.T) {
	testenv.Short(t)
	dir := t.TempDir()
	root := testRoot(t, dir)
	env := []string{"SOURCE_DATE_EPOCH=1700000000"}
	var sums []string
	for i, name := range []string{"a", "b"} {
		out := filepath.Join(dir, name)
		os.Mkdir(out, 0o755)
		img := filepath.Join(out, "node.img")
		if _, errs, err := run(t, env, "--board", "odroid-c2", "--rootfs", root, "-o", img, "-q"); err != nil {
			t.Fatalf("build %d: %v\n%s", i, err, errs)
		}
		sums = append(sums, sha(t, img)+" "+sha(t, img+".bmap"))
	}
	if sums[0] != sums[1] {
		t.Fatalf("two builds differ: %v", sums)
	}
	a, _ := os.ReadFile(filepath.Join(dir, "a/node.img.manifest.json"))
	b, _ := os.ReadFile(filepath.Join(dir, "b/node.img.manifest.json"))
	if !bytes.Equal(bytes.ReplaceAll(a, []byte(dir+"/a"), nil), bytes.ReplaceAll(b, []byte(dir+"/b"), nil)) {
		t.Fatalf("manifests differ:\n%s\n%s", a, b)
	}
}

// TestManifestBmapInspect checks the files beside the image and what
// inspect reports of it.
func TestManifestBmapInspect(t *testing.T) {
	testenv.Short(t)
	testenv.NeedTools(t, "bmaptool")
	dir := t.TempDir()
	root := testRoot(t, dir)
	blob := bootblobtest.SDImage(t, 1)
	blobPath := filepath.Join(dir, "u-boot.bin.sd.bin")
	os.WriteFile(blobPath, blob, 0o644)
	img := filepath.Join(dir, "node.img")
	_, errs, err := run(t, nil, "--board", "odroid-c2", "--rootfs", root, "--bootloader", blobPath, "-o", img, "-q", "--timings")
	if err != nil {
		t.Fatalf("build: %v\n%s", err, errs)
	}
	// --timings: a table on stderr and the same stages in the manifest.
	stages := []string{"resolve kernel", "resolve root tree", "resolve initramfs", "write boot partition", "write root partition", "checksum"}
	for _, st := range stages {
		if !strings.Contains(errs, st) {
			t.Errorf("--timings table lacks %q:\n%s", st, errs)
		}
	}

	var man struct {
		Board  string `json:"board"`
		SHA256 string `json:"sha256"`
		Inputs []struct {
			Kind, Path, SHA256 string
		} `json:"inputs"`
		Version string `json:"version"`
		Timings []struct {
			Stage   string
			Seconds float64
		} `json:"timings"`
	}
	data, err := os.ReadFile(img + ".manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &man); err != nil {
		t.Fatal(err)
	}
	if man.Board != "odroid-c2" || man.SHA256 != sha(t, img) || man.Version == "" {
		t.Fatalf("manifest: board %q sha %q (image %s) version %q", man.Board, man.SHA256, sha(t, img), man.Version)
	}
	var recorded []string
	for _, tm := range man.Timings {
		recorded = append(recorded, tm.Stage)
	}
	for _, st := range stages {
		if !slices.Contains(recorded, st) {
			t.Errorf("manifest timings lack %q: %v", st, recorded)
		}
	}
	kinds := map[string]string{}
	for _, in := range man.Inputs {
		kinds[in.Kind] = in.SHA256
	}
	if kinds["bootloader"] != sha(t, blobPath) || kinds["rootfs"] != sha(t, root) || kinds["kernel"] == "" || kinds["initramfs"] == "" {
		t.Fatalf("manifest inputs: %+v", man.Inputs)
	}

	// bmaptool copies the mapped ranges and checks their sha256 itself.
	copyTo := filepath.Join(dir, "copy.img")
	tool(t, "bmaptool", "copy", "--bmap", img+".bmap", img, copyTo)
	if sha(t, copyTo) != sha(t, img) {
		t.Fatal("bmaptool copy with our .bmap gives different bytes")
	}

	var ins struct {
		Disk struct {
			SignatureOK bool   `json:"mbr_signature_ok"`
			Board       string `json:"board"`
			Partitions  []struct {
				Number   int   `json:"number"`
				Start    int64 `json:"start"`
				Bootable bool  `json:"bootable"`
			} `json:"partitions"`
			Bootloader []struct {
				Offset  int64 `json:"offset"`
				NonZero bool  `json:"nonzero"`
			} `json:"bootloader"`
		} `json:"disk"`
		BootFiles []struct {
			Path string `json:"path"`
		} `json:"boot_files"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "inspect", "--json", img)), &ins); err != nil {
		t.Fatal(err)
	}
	d := ins.Disk
	if !d.SignatureOK || d.Board != "odroid-c2" || len(d.Partitions) != 2 || d.Partitions[0].Start != 4<<20 || !d.Partitions[0].Bootable {
		t.Fatalf("inspect disk: %+v", d)
	}
	if len(d.Bootloader) == 0 || !d.Bootloader[0].NonZero {
		t.Fatalf("inspect finds no bootloader bytes: %+v", d.Bootloader)
	}
	var files []string
	for _, f := range ins.BootFiles {
		files = append(files, f.Path)
	}
	for _, want := range []string{"Image", "initrd.img", "extlinux/extlinux.conf", "boot.scr", "dtbs/amlogic/meson-gxbb-odroidc2.dtb"} {
		if !strings.Contains(" "+strings.Join(files, " ")+" ", " "+want+" ") {
			t.Errorf("inspect lists no %s in %v", want, files)
		}
	}
	text := mustRun(t, "inspect", img)
	if !strings.Contains(text, "intact") || !strings.Contains(text, "extlinux/extlinux.conf") {
		t.Fatalf("inspect text:\n%s", text)
	}
}

// TestMkfsBackend builds with mkfs.btrfs as the root writer (the
// cross-check backend) and checks the root reads back.
func TestMkfsBackend(t *testing.T) {
	testenv.Short(t)
	testenv.NeedTools(t, "mkfs.btrfs", "btrfs", "fakeroot")
	dir := t.TempDir()
	root := testRoot(t, dir)
	img := filepath.Join(dir, "node.img")
	mustRun(t, "--board", "qemu-virt", "--rootfs", root, "--root-backend", "mkfs", "-o", img, "-q")
	p2 := extract(t, img, 2)
	tool(t, "btrfs", "check", "--readonly", p2)
	got := readBack(t, p2)
	for _, p := range []string{"etc/hostname", "usr/bin/big", "home/user/notes"} {
		if _, ok := got.Lookup(p); !ok {
			t.Errorf("mkfs root lacks %s", p)
		}
	}
}

// TestDryRunWritesNothing prints the plan and leaves the directory empty.
func TestDryRunWritesNothing(t *testing.T) {
	testenv.Short(t)
	dir := t.TempDir()
	root := testRoot(t, t.TempDir())
	out := mustRun(t, "--board", "macchiatobin", "--rootfs", root, "-o", filepath.Join(dir, "x.img"), "--dry-run")
	for _, want := range []string{"board:    macchiatobin", "p1", "p2", "dtbs/marvell/armada-8040-mcbin.dtb", "extlinux/extlinux.conf"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("dry run wrote %d files", len(ents))
	}
}
