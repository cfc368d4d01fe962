package disk

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/ondisk"

	"github.com/mkimage/mkimage/internal/build/fat"
	"github.com/mkimage/mkimage/internal/build/uboot"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/testenv"
)

const qemuUBoot = "/usr/lib/u-boot/qemu_arm64/u-boot.bin"

// TestUBootReadsCard boots Debian's u-boot-qemu on a card image made of
// our MBR and FAT32 and reads its console: U-Boot must find the bootable
// partition, read extlinux.conf (or run boot.scr) from our FAT and try to
// load the kernel it names. There is no kernel, so it goes no further.
func TestUBootReadsCard(t *testing.T) {
	testenv.Short(t)
	testenv.NeedTools(t, "qemu-system-aarch64")
	testenv.NeedFile(t, qemuUBoot)
	epoch := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	entry := uboot.Entry{Label: "mkimage-test", Kernel: "/Image", Initrd: "/initrd.img", Append: "console=ttyAMA0"}
	script, err := uboot.BootScript(entry)
	if err != nil {
		t.Fatal(err)
	}
	scr, err := uboot.ScriptImage("mkimage boot", "echo mkimage-script-ran\n"+script, epoch)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		files map[string][]byte
		want  []string
	}{
		{"extlinux", map[string][]byte{"extlinux/extlinux.conf": []byte(uboot.Extlinux(entry))},
			[]string{"Retrieving file: /extlinux/extlinux.conf", "1:\tmkimage-test", "Retrieving file: /initrd.img", "Skipping mkimage-test"}},
		{"boot.scr", map[string][]byte{"boot.scr": scr},
			[]string{"Found U-Boot script /boot.scr", "mkimage-script-ran", "Failed to load '/Image'", "mkimage boot.scr: could not boot mkimage-test"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := fstree.New(epoch)
			for p, b := range tc.files {
				tr.MkdirAll(filepath.Dir(p), epoch)
				tr.Put(p, fstree.NewFile(0o644, b, epoch))
			}
			bd := board(t, "qemu-virt")
			l, err := Plan(bd, 64*MiB, 4*MiB)
			if err != nil {
				t.Fatal(err)
			}
			img := filepath.Join(t.TempDir(), "card.img")
			f, err := os.Create(img)
			if err != nil {
				t.Fatal(err)
			}
			f.Truncate(l.Size)
			if _, err := fat.Write(io.NewOffsetWriter(f, l.Boot().Start), tr, fat.Options{Size: l.Boot().Size, VolumeID: 3, HiddenSectors: uint32(l.Boot().Start / 512)}); err != nil {
				t.Fatal(err)
			}
			if _, err := ondisk.WriteMBR(f, l.MBR(ondisk.DiskID([]byte(tc.name)))); err != nil {
				t.Fatal(err)
			}
			f.Close()

			log := filepath.Join(t.TempDir(), "console.log")
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a53", "-m", "512",
				"-bios", qemuUBoot, "-display", "none", "-monitor", "none", "-serial", "file:"+log, "-nic", "none",
				"-drive", "if=none,file="+img+",format=raw,id=d", "-device", "virtio-blk-device,drive=d")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			defer func() { cmd.Process.Kill(); <-done }()
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for {
				out, _ := os.ReadFile(log)
				missing := ""
				for _, w := range tc.want {
					if !bytes.Contains(out, []byte(w)) {
						missing = w
						break
					}
				}
				if missing == "" {
					// A failed load must stop the script before booti.
					for _, bad := range []string{"Failed to load '/initrd.img'", "Bad Linux ARM64 Image magic"} {
						if tc.name == "boot.scr" && bytes.Contains(out, []byte(bad)) {
							t.Errorf("console shows %q: the script went on after a failed load", bad)
						}
					}
					if testing.Verbose() {
						t.Logf("console:\n%s", tail(string(out), 1500))
					}
					return
				}
				select {
				case <-tick.C:
				case err := <-done:
					done <- err
					t.Fatalf("qemu exited (%v) before the console showed %q:\n%s\n%s", err, missing, out, stderr.String())
				case <-ctx.Done():
					t.Fatalf("console never showed %q:\n%s", missing, tail(string(out), 3000))
				}
			}
		})
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return strings.TrimSpace(s)
}
