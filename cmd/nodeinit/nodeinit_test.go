package main

import (
	"bytes"
	"encoding/binary"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/ondisk"
)

func TestConfig(t *testing.T) {
	tests := []struct {
		cmdline string
		want    config
		err     string
	}{
		{"console=ttyAMA0 root=LABEL=root rootwait", config{Root: "LABEL=root", RootFSType: "btrfs", Init: "/sbin/init", Timeout: 30 * time.Second, Coldplug: 5 * time.Second}, ""},
		{`root=/dev/mmcblk0p2 rootflags="subvol=@,noatime" init=/lib/systemd/systemd nodeinit.timeout=90 nodeinit.rescue`,
			config{Root: "/dev/mmcblk0p2", RootFSType: "btrfs", RootFlags: "subvol=@,noatime", Init: "/lib/systemd/systemd", Timeout: 90 * time.Second, Rescue: true, Coldplug: 5 * time.Second}, ""},
		{"nodeinit.timeout=1m30s rootfstype=ext4", config{RootFSType: "ext4", Init: "/sbin/init", Timeout: 90 * time.Second, Coldplug: 5 * time.Second}, ""},
		{"nodeinit.timeout=soon", config{}, "nodeinit.timeout=soon"},
		{"nodeinit.coldplug=0", config{RootFSType: "btrfs", Init: "/sbin/init", Timeout: 30 * time.Second}, ""},
		{"nodeinit.coldplug=1500ms", config{RootFSType: "btrfs", Init: "/sbin/init", Timeout: 30 * time.Second, Coldplug: 1500 * time.Millisecond}, ""},
		{"nodeinit.coldplug=-1", config{}, "nodeinit.coldplug=-1"},
		{"root=LABEL=root nodeinit.preconfigure", config{Root: "LABEL=root", RootFSType: "btrfs", Init: "/sbin/init", Timeout: 30 * time.Second, Preconfigure: true, Coldplug: 5 * time.Second}, ""},
		{"console=ttyAMA0 rootwait root=http://:80/root.img netroot.sha256=ab12",
			config{Root: "http://:80/root.img", NetrootSHA256: "ab12", RootFSType: "btrfs", Init: "/sbin/init", Timeout: 30 * time.Second, Coldplug: 5 * time.Second}, ""},
		{"root=LABEL=root netinstall=http://:80/node.img netinstall.sha256=cd34 netinstall.disk=mmcblk1",
			config{Root: "LABEL=root", Netinstall: "http://:80/node.img", NetinstallSHA256: "cd34", NetinstallDisk: "mmcblk1", RootFSType: "btrfs", Init: "/sbin/init", Timeout: 30 * time.Second, Coldplug: 5 * time.Second}, ""},
	}
	for _, tt := range tests {
		c := defaultConfig()
		err := c.apply(splitCmdline(tt.cmdline))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err = %v, want %q", tt.cmdline, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(c, tt.want) {
			t.Errorf("%q: got %+v, %v; want %+v", tt.cmdline, c, err, tt.want)
		}
	}
}

func TestMountOptions(t *testing.T) {
	flags, data := mountOptions("ro,noatime,subvol=@,compress=zstd")
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
