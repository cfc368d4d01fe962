package ondisk

import (
	"bytes"
	"errors"
	"testing"
)

func TestMBRRoundTrip(t *testing.T) {
	m := MBR{DiskID: 0x1234abcd, Partitions: []Partition{
		{Number: 1, Type: TypeFAT32LBA, Bootable: true, Start: 4 << 20, Size: 256 << 20},
		{Number: 2, Type: TypeLinux, Start: 260 << 20, Size: 1 << 30},
	}}
	b, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	sector := append(make([]byte, TableOffset), b...)
	got, err := ParseMBR(sector)
	if err != nil {
		t.Fatal(err)
	}
	if got.DiskID != m.DiskID || len(got.Partitions) != 2 || got.Partitions[1] != m.Partitions[1] || got.Partitions[0] != m.Partitions[0] {
		t.Errorf("round trip: %+v", got)
	}
	if id, err := DiskIDString(bytes.NewReader(sector)); err != nil || id != "1234abcd" {
		t.Errorf("DiskIDString = %q, %v", id, err)
	}
	// No signature: not an MBR, not an error for the prober.
	blank := make([]byte, SectorSize)
	var sig *SignatureError
	if _, err := ParseMBR(blank); !errors.As(err, &sig) {
		t.Errorf("blank sector: %v", err)
	}
	if id, err := DiskIDString(bytes.NewReader(blank)); err != nil || id != "" {
		t.Errorf("blank DiskIDString = %q, %v", id, err)
	}
	if _, err := ParseMBR(blank[:100]); err == nil {
		t.Error("short sector accepted")
	}
}

func TestProbeBtrfs(t *testing.T) {
	img := make([]byte, BtrfsSuperOffset+0x1000)
	if _, ok, err := ProbeBtrfs(bytes.NewReader(img)); ok || err != nil {
		t.Errorf("zeros: ok %v err %v", ok, err)
	}
	if _, ok, err := ProbeBtrfs(bytes.NewReader(img[:4096])); ok || err != nil {
		t.Errorf("short: ok %v err %v", ok, err)
	}
	sb := img[BtrfsSuperOffset:]
	copy(sb[btrfsMagicAt:], BtrfsMagic)
	copy(sb[btrfsFSIDAt:], []byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	copy(sb[btrfsLabelAt:], "root\x00junk")
	b, ok, err := ProbeBtrfs(bytes.NewReader(img))
	if !ok || err != nil || b.Label != "root" || b.FSID != "deadbeef-0102-0304-0506-0708090a0b0c" {
		t.Errorf("ProbeBtrfs = %+v %v %v", b, ok, err)
	}
}
