package rootdev

import (
	"bytes"
	"encoding/binary"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/ondisk"
)

func TestMountOptions(t *testing.T) {
	flags, data := MountOptions("ro,noatime,subvol=@,compress=zstd")
	if flags == 0 || data != "subvol=@,compress=zstd" {
		t.Errorf("flags %#x data %q", flags, data)
	}
}

// fake block devices: a disk with an MBR (id 0x1234abcd) and two
// partitions, the second a btrfs labelled "root".
func fakeDevs() ([]blockDev, func(string) (io.ReaderAt, func(), error)) {
	mbr := make([]byte, 512)
	binary.LittleEndian.PutUint32(mbr[440:], 0x1234abcd)
	mbr[510], mbr[511] = 0x55, 0xaa
	btrfs := make([]byte, 0x11000)
	copy(btrfs[0x10040:], ondisk.BtrfsMagic)
	copy(btrfs[0x10020:], []byte{0xe4, 0x09, 0xee, 0xd2, 0xd4, 0x2c, 0x49, 0x44, 0x98, 0x7a, 0xed, 0xbc, 0xfb, 0x7d, 0x37, 0x74})
	copy(btrfs[0x1012b:], "root")
	data := map[string][]byte{"vda": mbr, "vda1": make([]byte, 0x11000), "vda2": btrfs}
	devs := []blockDev{{Name: "vda", Disk: "vda"}, {Name: "vda1", Disk: "vda", PartNo: 1}, {Name: "vda2", Disk: "vda", PartNo: 2}}
	return devs, func(n string) (io.ReaderAt, func(), error) { return bytes.NewReader(data[n]), func() {}, nil }
}

func TestMatchRoot(t *testing.T) {
	devs, open := fakeDevs()
	tests := []struct {
		spec string
		want []string
		err  string
	}{
		{"LABEL=root", []string{"vda2"}, ""},
		{"LABEL=other", nil, ""},
		{"UUID=E409EED2-D42C-4944-987A-EDBCFB7D3774", []string{"vda2"}, ""},
		{"PARTUUID=1234abcd-02", []string{"vda2"}, ""},
		{"PARTUUID=1234abcd-01", []string{"vda1"}, ""},
		{"/dev/vda1", []string{"vda1"}, ""},
		{"", []string{"vda2"}, ""},
		{"nfs:1.2.3.4:/x", nil, "unsupported"},
		{"http://:80/root.img", nil, ""}, // fetched, not found: no device, no error
		{"https://10.0.0.1/root.img", nil, ""},
	}
	for _, tt := range tests {
		got, err := matchRoot(tt.spec, devs, open)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err = %v", tt.spec, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q: got %v, %v; want %v", tt.spec, got, err, tt.want)
		}
	}
}
