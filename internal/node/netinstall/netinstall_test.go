package netinstall

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/bmap"
	"github.com/mkimage/mkimage/internal/node/netfetch/fetchtest"
)

func TestChooseDisk(t *testing.T) {
	for _, c := range []struct {
		name  string
		disks map[string]string // name -> "ro size"
		want  string
		err   string
	}{
		{"one card", map[string]string{"mmcblk0": "0 31116288", "mmcblk0boot0": "1 8192", "loop0": "0 100", "zram0": "0 100"}, "/dev/mmcblk0", ""},
		{"virtio", map[string]string{"vda": "0 2097152", "ram0": "0 100"}, "/dev/vda", ""},
		{"empty reader skipped", map[string]string{"sda": "0 0", "mmcblk1": "0 100"}, "/dev/mmcblk1", ""},
		{"read-only skipped", map[string]string{"sr0": "1 100", "mmcblk0": "1 100"}, "", "no disk to install to"},
		{"two disks", map[string]string{"sda": "0 100", "mmcblk0": "0 100"}, "", "several disks could take the image (mmcblk0, sda)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			sys := t.TempDir()
			for n, v := range c.disks {
				ro, size, _ := strings.Cut(v, " ")
				os.MkdirAll(filepath.Join(sys, n), 0o755)
				os.WriteFile(filepath.Join(sys, n, "ro"), []byte(ro+"\n"), 0o644)
				os.WriteFile(filepath.Join(sys, n, "size"), []byte(size+"\n"), 0o644)
			}
			got, err := ChooseDisk(sys, "")
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("got %q, %v; want error %q", got, err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %q, %v; want %q", got, err, c.want)
			}
		})
	}
	if got, _ := ChooseDisk("/nonexistent", "mmcblk1"); got != "/dev/mmcblk1" {
		t.Errorf("named disk: %q", got)
	}
}

// TestInstall writes a served image over a used "card" (a file full of
// garbage) with the project's own HTTP server on loopback.
// TestHeadLast: writes and reads that straddle the first sector split
// between memory and the device.
func TestHeadLast(t *testing.T) {
	dev, err := os.Create(filepath.Join(t.TempDir(), "dev"))
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	dev.Write(bytes.Repeat([]byte{0xee}, 2048))
	h := &headLast{dev: dev}
	data := bytes.Repeat([]byte("abcdefgh"), 128) // 1024 bytes at 100
	if n, err := h.WriteAt(data, 100); n != len(data) || err != nil {
		t.Fatalf("WriteAt: %d, %v", n, err)
	}
	onDev := make([]byte, 2048)
	dev.ReadAt(onDev, 0)
	if !bytes.Equal(onDev[:512], bytes.Repeat([]byte{0xee}, 512)) {
		t.Error("the first sector reached the device")
	}
	if !bytes.Equal(onDev[512:1124], data[412:]) {
		t.Error("the rest did not reach the device")
	}
	got := make([]byte, 1024)
	if n, err := h.ReadAt(got, 100); n != 1024 || err != nil || !bytes.Equal(got, data) {
		t.Errorf("ReadAt: %d, %v, equal %v", n, err, bytes.Equal(got, data))
	}
}

func TestInstall(t *testing.T) {
	dir := t.TempDir()
	img := make([]byte, 3<<20)
	copy(img[0:], bytes.Repeat([]byte("MBR!"), 128))
	copy(img[1<<20:], bytes.Repeat([]byte("root"), 40000))
	if err := os.WriteFile(filepath.Join(dir, "node.img"), img, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := fetchtest.WriteMap(t, filepath.Join(dir, "node.img"), []bmap.Extent{{Off: 0, Len: 512}, {Off: 1 << 20, Len: 160000}})
	ap := fetchtest.Serve(t, dir)

	card := filepath.Join(t.TempDir(), "card")
	os.WriteFile(card, bytes.Repeat([]byte{0xee}, 4<<20), 0o644)
	var lines []string
	o := Options{
		URL: fetchtest.URL(ap, "node.img"), SHA256: sum,
		Server: ap.Addr(), Disk: card, Log: func(f string, a ...any) { lines = append(lines, f) },
	}
	got, err := Install(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if got != card {
		t.Errorf("wrote %s", got)
	}
	b, _ := os.ReadFile(card)
	if !bytes.Equal(b[:512], img[:512]) || !bytes.Equal(b[1<<20:1<<20+160000], img[1<<20:1<<20+160000]) {
		t.Error("card does not hold the image's data")
	}
	if b[2<<20] != 0xee {
		t.Error("an unmapped block was written")
	}
	// A wrong sha256 on the command line fails the install, and the
	// card is left without a partition table: not bootable, although
	// every data block was written.
	o.SHA256 = strings.Repeat("1", 64)
	if _, err := Install(context.Background(), o); err == nil || !strings.Contains(err.Error(), "image sha256 is") {
		t.Errorf("wrong sum: %v", err)
	}
	b, _ = os.ReadFile(card)
	if !bytes.Equal(b[:512], make([]byte, 512)) {
		t.Errorf("failed install left a partition table: % x...", b[:16])
	}
	if !bytes.Equal(b[1<<20:1<<20+160000], img[1<<20:1<<20+160000]) {
		t.Error("data blocks not written before the check")
	}
}

// TestWaitDisk: a card that shows up late is waited for; two candidates
// fail at once, naming them; none fails after the limit.
func TestWaitDisk(t *testing.T) {
	sys := t.TempDir()
	dev := t.TempDir()
	addDisk := func(name string) {
		os.MkdirAll(filepath.Join(sys, name), 0o755)
		os.WriteFile(filepath.Join(sys, name, "ro"), []byte("0\n"), 0o644)
		os.WriteFile(filepath.Join(sys, name, "size"), []byte("100\n"), 0o644)
	}
	start := time.Now()
	if _, err := WaitDisk(sys, "", 300*time.Millisecond, t.Logf); err == nil || !strings.Contains(err.Error(), "no disk to install to") {
		t.Errorf("no disk: %v", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("gave up after %v, want the full 300ms", d)
	}

	// A named disk is waited for until its device node exists.
	named := filepath.Join(dev, "mmcblk1")
	time.AfterFunc(200*time.Millisecond, func() { os.WriteFile(named, nil, 0o644) })
	start = time.Now()
	got, err := WaitDisk(sys, named, 5*time.Second, t.Logf)
	if err != nil || got != named {
		t.Errorf("named disk: %q, %v", got, err)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 2*time.Second {
		t.Errorf("returned after %v, want soon after the disk appeared at 200ms", d)
	}

	addDisk("sda")
	addDisk("vdb")
	start = time.Now()
	if _, err := WaitDisk(sys, "", 5*time.Second, t.Logf); err == nil || !strings.Contains(err.Error(), "several disks could take the image (sda, vdb)") {
		t.Errorf("two disks: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("two disks: waited %v, want an immediate error", d)
	}
}
