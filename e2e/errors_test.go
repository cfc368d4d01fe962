package e2e

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/build/amlimage"
	"github.com/mkimage/mkimage/internal/build/bootblob/bootblobtest"
	"github.com/mkimage/mkimage/internal/testenv"
)

func writeTar(t *testing.T, path string, entries ...tarEntry) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.h
		h.Size = int64(len(e.data))
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.data)
	}
	tw.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestBadInputs: each bad input gives one clear error naming it, a
// non-zero exit, and no output file (image, .bmap or manifest).
func TestBadInputs(t *testing.T) {
	testenv.Short(t)
	dir := t.TempDir()
	goodRoot := testRoot(t, dir)
	notDeb := filepath.Join(dir, "kernel.deb")
	os.WriteFile(notDeb, []byte("!<arch>\ngarbage that is not a deb"), 0o644)
	missing := filepath.Join(dir, "nope.deb")
	corruptTar := filepath.Join(dir, "corrupt.tar.gz")
	good, _ := os.ReadFile(goodRoot)
	os.WriteFile(corruptTar, good[:len(good)/2], 0o644)
	dotdot := writeTar(t, filepath.Join(dir, "dotdot.tar"), tarEntry{h: tar.Header{Name: "etc/../../escape", Typeflag: tar.TypeReg}, data: []byte("x")})
	abs := writeTar(t, filepath.Join(dir, "abs.tar"), tarEntry{h: tar.Header{Name: "/etc/passwd", Typeflag: tar.TypeReg}, data: []byte("x")})
	through := writeTar(t, filepath.Join(dir, "through.tar"),
		tarEntry{h: tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: "/tmp"}},
		tarEntry{h: tar.Header{Name: "evil/planted", Typeflag: tar.TypeReg}, data: []byte("x")})
	// A well-formed signed image too large for the space before p1.
	parts := bootblobtest.Parts(1)
	parts.BL33 = bootblobtest.UBoot(2, 5<<20)
	bigBlob := filepath.Join(dir, "big-blob.bin")
	os.WriteFile(bigBlob, amlimage.SDImage(bootblobtest.Image(t, parts)), 0o644)
	randomBlob := filepath.Join(dir, "random.bin")
	os.WriteFile(randomBlob, bootblobtest.Random(3, 1<<20), 0o644)
	unsigned := filepath.Join(dir, "u-boot.bin")
	os.WriteFile(unsigned, bootblobtest.UBoot(4, 600<<10), 0o644)

	for _, tc := range []struct {
		name string
		args []string
		want []string // all must appear in stderr
	}{
		{"unknown board", []string{"--board", "raspberry-pi"}, []string{"raspberry-pi", "odroid-c2", "qemu-virt"}},
		{"missing kernel", []string{"--board", "qemu-virt", "--kernel", missing}, []string{"--kernel", "nope.deb"}},
		{"corrupt kernel", []string{"--board", "qemu-virt", "--kernel", notDeb}, []string{"--kernel", "kernel.deb"}},
		{"corrupt tarball", []string{"--board", "qemu-virt", "--rootfs", corruptTar}, []string{"--rootfs", "corrupt.tar.gz"}},
		{"dotdot entry", []string{"--board", "qemu-virt", "--rootfs", dotdot}, []string{"dotdot.tar", ".."}},
		{"absolute entry", []string{"--board", "qemu-virt", "--rootfs", abs}, []string{"abs.tar", "/etc/passwd"}},
		{"through symlink", []string{"--board", "qemu-virt", "--rootfs", through}, []string{"through.tar", "evil"}},
		{"root too large", []string{"--board", "qemu-virt", "--rootfs", goodRoot, "--root-size", "4MiB"}, []string{"--root-size", "too small"}},
		{"unknown coldplug module", []string{"--board", "qemu-virt", "--rootfs", goodRoot, "--coldplug", "no_such_driver"}, []string{"coldplug", "no_such_driver"}},
		{"blob too large", []string{"--board", "odroid-c2", "--rootfs", goodRoot, "--bootloader", bigBlob}, []string{"big-blob.bin", "partition 1"}},
		{"random bootloader", []string{"--board", "odroid-c2", "--rootfs", goodRoot, "--bootloader", randomBlob}, []string{"random.bin", "unrecognised data", "signed Amlogic SD image"}},
		{"unsigned u-boot", []string{"--board", "odroid-c2", "--rootfs", goodRoot, "--bootloader", unsigned}, []string{"u-boot.bin", "an unsigned u-boot.bin"}},
		{"random flash-image", []string{"--board", "macchiatobin", "--rootfs", goodRoot, "--bootloader", randomBlob}, []string{"random.bin", "Armada 8K boot image"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			img := filepath.Join(out, "node.img")
			_, stderr, err := run(t, nil, append(tc.args, "-o", img)...)
			if err == nil {
				t.Fatalf("mkimage succeeded; want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not name %q:\n%s", w, stderr)
				}
			}
			if lines := strings.Count(strings.TrimSpace(lastError(stderr)), "\n"); lines > 0 {
				t.Errorf("want one error line, got:\n%s", stderr)
			}
			left, _ := os.ReadDir(out)
			for _, e := range left {
				t.Errorf("left behind: %s", e.Name())
			}
		})
	}
}

// lastError returns the lines from the "mkimage: error:" line on.
func lastError(stderr string) string {
	if i := strings.Index(stderr, "mkimage: error: "); i >= 0 {
		return stderr[i:]
	}
	return stderr
}
