package disk

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/ondisk"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/internal/testenv"
)

const MiB = 1 << 20

func board(t testing.TB, name string) *boards.Board {
	t.Helper()
	b, err := boards.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		board                      string
		boot, root                 int64
		bootStart, rootStart, size int64
	}{
		{"odroid-c2", 256 * MiB, 1024 * MiB, 4 * MiB, 260 * MiB, 1284 * MiB},
		{"macchiatobin", 256 * MiB, 512 * MiB, 4 * MiB, 260 * MiB, 772 * MiB},
		{"qemu-virt", 256*MiB + 512, 64 * MiB, 4 * MiB, 264 * MiB, 328 * MiB},
	} {
		l, err := Plan(board(t, tc.board), tc.boot, tc.root)
		if err != nil {
			t.Fatal(err)
		}
		b, r := l.Boot(), l.Root()
		if b.Start != tc.bootStart || b.Size != tc.boot || !b.Bootable || b.Type != 0x0c || b.Number != 1 ||
			r.Start != tc.rootStart || r.Size != tc.root || r.Bootable || r.Type != 0x83 || r.Number != 2 || l.Size != tc.size {
			t.Errorf("%s: %+v", tc.board, l)
		}
		if r.Start%Align != 0 || r.Start < b.End() {
			t.Errorf("%s: root at %d", tc.board, r.Start)
		}
	}
	for _, bad := range [][2]int64{{0, MiB}, {MiB, 0}, {1000, MiB}, {MiB, -512}, {MiB, 3 << 40}} {
		if _, err := Plan(board(t, "qemu-virt"), bad[0], bad[1]); err == nil {
			t.Errorf("Plan(%d, %d) accepted", bad[0], bad[1])
		}
	}
}

func newImage(t testing.TB, size int64) (*os.File, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return f, p
}

type sfdiskJSON struct {
	PartitionTable struct {
		Label      string `json:"label"`
		ID         string `json:"id"`
		Partitions []struct {
			Start    int64  `json:"start"`
			Size     int64  `json:"size"`
			Type     string `json:"type"`
			Bootable bool   `json:"bootable"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

func sfdiskRead(t *testing.T, img string) sfdiskJSON {
	t.Helper()
	out, err := exec.Command("sfdisk", "-J", img).Output()
	if err != nil {
		t.Fatalf("sfdisk -J: %v\n%s", err, out)
	}
	var j sfdiskJSON
	if err := json.Unmarshal(out, &j); err != nil {
		t.Fatal(err)
	}
	return j
}

// TestMBRMatchesSfdisk: sfdisk reads our table as planned, and a table
// sfdisk writes for the same layout has the same bytes (CHS included).
func TestMBRMatchesSfdisk(t *testing.T) {
	testenv.NeedTools(t, "sfdisk")
	for _, root := range []int64{64 * MiB, 9 << 30} { // CHS in range, and saturated
		l, err := Plan(board(t, "qemu-virt"), 256*MiB, root)
		if err != nil {
			t.Fatal(err)
		}
		f, img := newImage(t, l.Size)
		if _, err := ondisk.WriteMBR(f, l.MBR(0x1234abcd)); err != nil {
			t.Fatal(err)
		}
		j := sfdiskRead(t, img)
		pt := j.PartitionTable
		if pt.Label != "dos" || pt.ID != "0x1234abcd" || len(pt.Partitions) != 2 {
			t.Fatalf("sfdisk sees %+v", pt)
		}
		for i, p := range l.Partitions {
			s := pt.Partitions[i]
			if s.Start*512 != p.Start || s.Size*512 != p.Size || s.Bootable != p.Bootable || s.Type != fmt.Sprintf("%x", p.Type) {
				t.Errorf("partition %d: sfdisk %+v, planned %+v", i+1, s, p)
			}
		}

		_, ref := newImage(t, l.Size)
		script := fmt.Sprintf("label: dos\nlabel-id: 0x1234abcd\nstart=%d, size=%d, type=c, bootable\nstart=%d, size=%d, type=83\n",
			l.Boot().Start/512, l.Boot().Size/512, l.Root().Start/512, l.Root().Size/512)
		cmd := exec.Command("sfdisk", "-q", "--no-reread", "--no-tell-kernel", ref)
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("sfdisk: %v\n%s", err, out)
		}
		want, got := sector0(t, ref), sector0(t, img)
		if !bytes.Equal(got[:512], want[:512]) {
			t.Errorf("root %d: sector 0 differs from sfdisk's\nours:   % x\nsfdisk: % x", root, got[440:512], want[440:512])
		}
	}
}

func sector0(t *testing.T, p string) []byte {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 512)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReadMBRRoundTrip(t *testing.T) {
	l, _ := Plan(board(t, "odroid-c2"), 256*MiB, 512*MiB)
	b, err := l.MBR(77).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	s := make([]byte, 512)
	copy(s[440:], b)
	m, err := ondisk.ReadMBR(bytes.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(m) != fmt.Sprint(l.MBR(77)) {
		t.Errorf("read %+v, wrote %+v", m, l.MBR(77))
	}
	s[511] = 0
	if _, err := ondisk.ReadMBR(bytes.NewReader(s)); err == nil {
		t.Error("missing signature accepted")
	}
	if _, err := (ondisk.MBR{Partitions: []ondisk.Partition{{Number: 1, Start: 100, Size: 512}}}).Bytes(); err == nil {
		t.Error("unaligned partition accepted")
	}
}

func blob(n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(int64(n))).Read(b)
	return b
}

func TestOdroidC2Bootloader(t *testing.T) {
	testenv.NeedTools(t, "sfdisk")
	bd := board(t, "odroid-c2")
	l, _ := Plan(bd, 8*MiB, 8*MiB)
	bl := blob(800 << 10)
	for _, mbrFirst := range []bool{false, true} {
		f, img := newImage(t, l.Size)
		if mbrFirst {
			ondisk.WriteMBR(f, l.MBR(0xcafe0001))
		}
		rs, err := WriteBootloader(f, bd, "u-boot.bin.sd.bin", bl)
		if err != nil {
			t.Fatal(err)
		}
		if !mbrFirst {
			ondisk.WriteMBR(f, l.MBR(0xcafe0001))
		}
		if fmt.Sprint(rs) != fmt.Sprint([]ondisk.Range{{Offset: 0, Length: 440}, {Offset: 512, Length: int64(len(bl)) - 512}}) {
			t.Errorf("ranges %v", rs)
		}
		d, _ := os.ReadFile(img)
		if !bytes.Equal(d[:440], bl[:440]) {
			t.Error("sector 0 bytes 0..439 are not the blob's")
		}
		if !bytes.Equal(d[512:len(bl)], bl[512:]) {
			t.Error("bytes from 512 on are not the blob's")
		}
		if bytes.Equal(d[440:512], bl[440:512]) {
			t.Error("blob bytes 440..511 landed on the table")
		}
		j := sfdiskRead(t, img)
		if j.PartitionTable.ID != "0xcafe0001" || len(j.PartitionTable.Partitions) != 2 || j.PartitionTable.Partitions[0].Start != 8192 {
			t.Errorf("sfdisk after the blob: %+v", j.PartitionTable)
		}
		rep, err := Inspect(f, l.Size, bd)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.SignatureOK || rep.DiskID != "0xcafe0001" || len(rep.Problems) != 0 || !rep.BootCodeNonZero ||
			len(rep.Bootloader) != 2 || rep.Bootloader[1].DataEnd != int64(len(bl)) || rep.Bootloader[1].Offset != 512 || rep.Bootloader[1].Length != 4*MiB-512 {
			js, _ := json.MarshalIndent(rep, "", "  ")
			t.Errorf("inspect:\n%s", js)
		}
	}
}

func TestMacchiatobinBootloader(t *testing.T) {
	bd := board(t, "macchiatobin")
	l, _ := Plan(bd, 8*MiB, 8*MiB)
	f, img := newImage(t, l.Size)
	bl := blob(2 << 20)
	if _, err := WriteBootloader(f, bd, "flash-image.bin", bl); err != nil {
		t.Fatal(err)
	}
	ondisk.WriteMBR(f, l.MBR(1))
	d, _ := os.ReadFile(img)
	if !bytes.Equal(d[512:512+len(bl)], bl) {
		t.Error("blob does not start at byte 512")
	}
	if lastNonZero(d[:440]) >= 0 {
		t.Error("boot code bytes written")
	}
	if lastNonZero(d[512+len(bl):]) >= 0 {
		t.Error("bytes written after the blob")
	}
}

func TestBootloaderErrors(t *testing.T) {
	custom, err := boards.Parse("x.toml", []byte(`name = "x"
console = "ttyS0"
first_partition_offset = "4MiB"
modules = ["m"]
[bootloader]
required = true
format = "armada-8k"
protect = [{ offset = 1024, length = 512, why = "vendor environment" }]
writes = [{ from = 0, to = 512 }]
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		board string
		b     *boards.Board
		size  int
		want  []string
	}{
		{"odroid-c2", nil, 4*MiB + 1, []string{"u-boot.bin.sd.bin is 4194305 bytes", "reach offset 4194305", "partition 1 starts at 4194304"}},
		{"macchiatobin", nil, 4 * MiB, []string{"is 4194304 bytes", "reach offset 4194816", "starts at 4194304"}},
		{"odroid-c2", nil, 300, []string{"is 300 bytes"}},
		{"x", custom, 1000, []string{"overlaps 1024..1535", "vendor environment"}},
	} {
		bd := tc.b
		if bd == nil {
			bd = board(t, tc.board)
		}
		var w countWriter
		name := "u-boot.bin.sd.bin"
		_, err := WriteBootloader(&w, bd, name, blob(tc.size))
		if err == nil {
			t.Errorf("%s blob of %d: accepted", tc.board, tc.size)
			continue
		}
		for _, s := range tc.want {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q lacks %q", tc.board, err, s)
			}
		}
		if w.n != 0 {
			t.Errorf("%s: %d writes before the error", tc.board, w.n)
		}
	}
	// The table bytes are protected even when a board file forgets.
	forgot, err := boards.Parse("y.toml", []byte(`name = "y"
console = "ttyS0"
first_partition_offset = "4MiB"
modules = ["m"]
[bootloader]
format = "armada-8k"
writes = [{ from = 0, to = 0 }]
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := PlaceBootloader(forgot, "b", 1000); err == nil || !strings.Contains(err.Error(), "partition table") {
		t.Errorf("write over the table: %v", err)
	}
	if ps, err := PlaceBootloader(board(t, "qemu-virt"), "none", 0); err != nil || len(ps) != 0 {
		t.Errorf("qemu-virt: %v %v", ps, err)
	}
}

type countWriter struct{ n int }

func (w *countWriter) WriteAt(b []byte, off int64) (int, error) { w.n++; return len(b), nil }

func TestInspectProblems(t *testing.T) {
	bd := board(t, "odroid-c2")
	l, _ := Plan(bd, 8*MiB, 8*MiB)
	f, _ := newImage(t, l.Size)
	rep, err := Inspect(f, l.Size, bd)
	if err != nil {
		t.Fatal(err)
	}
	if rep.SignatureOK || len(rep.Problems) == 0 || !strings.Contains(rep.Problems[0], "no MBR signature") {
		t.Errorf("blank disk: %+v", rep)
	}
	ondisk.WriteMBR(f, l.MBR(5))
	rep, _ = Inspect(f, l.Size-MiB, bd)
	joined := strings.Join(rep.Problems, "\n")
	for _, want := range []string{"partition 2 ends at", "all zero"} {
		if !strings.Contains(joined, want) {
			t.Errorf("problems lack %q:\n%s", want, joined)
		}
	}
	js, err := json.Marshal(rep)
	if err != nil || !bytes.Contains(js, []byte(`"type_name":"FAT32 (LBA)"`)) || !bytes.Contains(js, []byte(`"disk_id":"0x00000005"`)) {
		t.Errorf("json %s %v", js, err)
	}
}

func TestDiskID(t *testing.T) {
	a, b := ondisk.DiskID([]byte("ab"), []byte("c")), ondisk.DiskID([]byte("a"), []byte("bc"))
	if a == b || a == 0 || a != ondisk.DiskID([]byte("ab"), []byte("c")) {
		t.Errorf("ids %x %x", a, b)
	}
}
