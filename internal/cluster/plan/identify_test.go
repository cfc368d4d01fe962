package plan

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fakeSys is a sysfs tree with what Identify reads.
type fakeSys struct {
	nics   map[string]string // interface -> address file content
	serial string            // firmware/devicetree/base/serial-number; "" for none
	cards  map[string]string // block device -> device/serial content
}

func (f fakeSys) write(t *testing.T) string {
	t.Helper()
	sys := t.TempDir()
	put := func(rel, data string) {
		p := filepath.Join(sys, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	put("class/net/lo/address", "00:00:00:00:00:00\n")
	for iface, mac := range f.nics {
		put("class/net/"+iface+"/address", mac)
	}
	if f.serial != "" {
		put("firmware/devicetree/base/serial-number", f.serial)
	}
	for dev, s := range f.cards {
		put("block/"+dev+"/size", "1024\n")
		if s != "" {
			put("block/"+dev+"/device/serial", s)
		}
	}
	return sys
}

// inventory names a node by each key and by combinations of them.
var inventory = &Baked{
	Version: Version,
	Unknown: Plan{Role: "worker", Governor: "ondemand"},
	Nodes: []Plan{
		{Name: "bymac", MAC: "00:1e:06:00:00:01", IP: "192.168.142.11", PrefixLen: 24},
		{Name: "byserial", SerialNumber: "0a1b2c3d", IP: "192.168.142.12", PrefixLen: 24},
		{Name: "bycard", CardSerial: "0x1234abcd", IP: "192.168.142.13", PrefixLen: 24},
		{Name: "serialmac", SerialNumber: "d5e6", MAC: "00:1e:06:00:00:04", IP: "192.168.142.14", PrefixLen: 24},
		{Name: "emmc", CardSerial: "0x0000beef", MAC: "00:1e:06:00:00:05", IP: "192.168.142.15", PrefixLen: 24},
	},
}

const random = "f2:3c:91:aa:bb:cc\n" // a MAC that is in no inventory

func TestIdentify(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sys      fakeSys
		rootPart string
		// want: node name, known, key, value, interface and its MAC
		node         string
		known        bool
		by, value    string
		iface, mac   string
		wantConflict string // substring of the *ConflictError
		wantErr      error
		wantSerial   string
		wantCards    []string
	}{
		{name: "mac", sys: fakeSys{nics: map[string]string{"eth0": "00:1E:06:00:00:01\n"}},
			node: "bymac", known: true, by: KeyMAC, value: "00:1e:06:00:00:01", iface: "eth0", mac: "00:1e:06:00:00:01"},
		{name: "mac on the second interface", sys: fakeSys{nics: map[string]string{"eth0": random, "eth1": "00:1e:06:00:00:01\n"}},
			node: "bymac", known: true, by: KeyMAC, value: "00:1e:06:00:00:01", iface: "eth1", mac: "00:1e:06:00:00:01"},
		{name: "dt serial, NUL-terminated, upper case, random MAC", sys: fakeSys{nics: map[string]string{"eth0": random}, serial: "0A1B2C3D\x00"},
			node: "byserial", known: true, by: KeySerialNumber, value: "0a1b2c3d", iface: "eth0", mac: "f2:3c:91:aa:bb:cc", wantSerial: "0a1b2c3d"},
		{name: "dt serial with 0x", sys: fakeSys{nics: map[string]string{"eth0": random}, serial: "0x0a1b2c3d\x00"},
			node: "byserial", known: true, by: KeySerialNumber, value: "0a1b2c3d", iface: "eth0", mac: "f2:3c:91:aa:bb:cc"},
		{name: "card serial", sys: fakeSys{nics: map[string]string{"eth0": random}, cards: map[string]string{"mmcblk0": "0x1234ABCD\n"}}, rootPart: "mmcblk0p2",
			node: "bycard", known: true, by: KeyCardSerial, value: "0x1234abcd", iface: "eth0", mac: "f2:3c:91:aa:bb:cc", wantCards: []string{"0x1234abcd"}},
		{name: "the root's card, not the eMMC", sys: fakeSys{nics: map[string]string{"eth0": random}, cards: map[string]string{"mmcblk0": "0x0000beef\n", "mmcblk1": "0x1234abcd\n"}}, rootPart: "mmcblk1p2",
			node: "bycard", known: true, by: KeyCardSerial, value: "0x1234abcd", iface: "eth0", mac: "f2:3c:91:aa:bb:cc", wantCards: []string{"0x1234abcd"}},
		{name: "another card than the root's is not looked at", sys: fakeSys{nics: map[string]string{"eth0": random}, cards: map[string]string{"mmcblk0": "0x1234abcd\n", "mmcblk1": "0x00c0ffee\n"}}, rootPart: "mmcblk1p2",
			node: "node-f23c91aabbcc", iface: "eth0", mac: "f2:3c:91:aa:bb:cc", wantCards: []string{"0x00c0ffee"}},
		{name: "root not on a card: any card", sys: fakeSys{nics: map[string]string{"eth0": random}, cards: map[string]string{"mmcblk0": "0x1234abcd\n", "mmcblk0boot0": "0x0000beef\n"}}, rootPart: "vda2",
			node: "bycard", known: true, by: KeyCardSerial, value: "0x1234abcd", iface: "eth0", mac: "f2:3c:91:aa:bb:cc", wantCards: []string{"0x1234abcd"}},
		{name: "root's card has no serial: any card", sys: fakeSys{nics: map[string]string{"eth0": random}, cards: map[string]string{"mmcblk0": "", "mmcblk1": "1234abcd\n"}}, rootPart: "mmcblk0p2",
			node: "bycard", known: true, by: KeyCardSerial, value: "0x1234abcd", iface: "eth0", mac: "f2:3c:91:aa:bb:cc"},
		{name: "serial first, the MAC's interface kept", sys: fakeSys{nics: map[string]string{"eth0": random, "eth1": "00:1e:06:00:00:04\n"}, serial: "d5e6\x00"},
			node: "serialmac", known: true, by: KeySerialNumber, value: "d5e6", iface: "eth1", mac: "00:1e:06:00:00:04"},
		{name: "serial first, inventory MAC gone", sys: fakeSys{nics: map[string]string{"eth0": random}, serial: "d5e6\x00"},
			node: "serialmac", known: true, by: KeySerialNumber, value: "d5e6", iface: "eth0", mac: "f2:3c:91:aa:bb:cc"},
		{name: "card before mac", sys: fakeSys{nics: map[string]string{"eth0": "00:1e:06:00:00:05\n"}, cards: map[string]string{"mmcblk0": "0x0000beef\n"}}, rootPart: "mmcblk0p2",
			node: "emmc", known: true, by: KeyCardSerial, value: "0x0000beef", iface: "eth0", mac: "00:1e:06:00:00:05"},
		{name: "conflict serial and mac", sys: fakeSys{nics: map[string]string{"eth0": "00:1e:06:00:00:01\n"}, serial: "0a1b2c3d\x00"},
			node: "node-001e06000001", iface: "eth0", mac: "00:1e:06:00:00:01",
			wantConflict: "this machine matches more than one inventory node: serial_number 0a1b2c3d is node byserial, mac 00:1e:06:00:00:01 is node bymac"},
		{name: "conflict card and serial", sys: fakeSys{nics: map[string]string{"eth0": random}, serial: "0a1b2c3d", cards: map[string]string{"mmcblk0": "0x1234abcd\n"}},
			node: "node-f23c91aabbcc", iface: "eth0", mac: "f2:3c:91:aa:bb:cc",
			wantConflict: "serial_number 0a1b2c3d is node byserial, card_serial 0x1234abcd is node bycard"},
		{name: "conflict two macs", sys: fakeSys{nics: map[string]string{"eth0": "00:1e:06:00:00:01\n", "eth1": "00:1e:06:00:00:04\n"}},
			node: "node-001e06000001", iface: "eth0", mac: "00:1e:06:00:00:01",
			wantConflict: "mac 00:1e:06:00:00:01 is node bymac, mac 00:1e:06:00:00:04 is node serialmac"},
		{name: "unknown: zero serials are no serials", sys: fakeSys{nics: map[string]string{"eth0": random}, serial: "0000000000000000\x00", cards: map[string]string{"mmcblk0": "0x00000000\n"}}, rootPart: "mmcblk0p2",
			node: "node-f23c91aabbcc", iface: "eth0", mac: "f2:3c:91:aa:bb:cc", wantSerial: "", wantCards: nil},
		{name: "unknown", sys: fakeSys{nics: map[string]string{"eth1": random, "eth0": "00:00:00:00:00:00\n", "wlan0": "02:00:00:00:00:01\n"}, serial: "ffee\x00"},
			node: "node-f23c91aabbcc", iface: "eth1", mac: "f2:3c:91:aa:bb:cc", wantSerial: "ffee"},
		{name: "serial without any NIC", sys: fakeSys{serial: "0a1b2c3d"},
			node: "byserial", known: true, by: KeySerialNumber, value: "0a1b2c3d"},
		{name: "nothing", sys: fakeSys{}, wantErr: ErrNoNIC},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := Identify(tc.sys.write(t), tc.rootPart, inventory)
			var conflict *ConflictError
			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				return
			case tc.wantConflict != "":
				if !errors.As(err, &conflict) || !strings.Contains(err.Error(), tc.wantConflict) {
					t.Fatalf("err %v, want a conflict %q", err, tc.wantConflict)
				}
			case err != nil:
				t.Fatal(err)
			}
			got := []any{id.Plan.Name, id.Known, id.By, id.Value, id.Iface, id.Plan.MAC}
			want := []any{tc.node, tc.known, tc.by, tc.value, tc.iface, tc.mac}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("name, known, by, value, iface, mac = %q\nwant %q", got, want)
			}
			if !id.Known && id.Plan.IP != "" {
				t.Errorf("unknown node has a static address %s", id.Plan.IP)
			}
			if tc.wantSerial != "" && id.Machine.SerialNumber != tc.wantSerial {
				t.Errorf("machine serial %q, want %q", id.Machine.SerialNumber, tc.wantSerial)
			}
			if tc.wantCards != nil && !reflect.DeepEqual(id.Machine.CardSerials, tc.wantCards) {
				t.Errorf("machine card serials %q, want %q", id.Machine.CardSerials, tc.wantCards)
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"0A1B2C3D\x00", "0a1b2c3d"},
		{"0x0a1b\x00\x00", "0a1b"},
		{" HKC2-1234 \n", "hkc2-1234"},
	} {
		if got := NormalizeSerialNumber(tc.in); got != tc.want {
			t.Errorf("NormalizeSerialNumber(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"0x1234abcd\n", "0x1234abcd", true},
		{"1234ABCD", "0x1234abcd", true},
		{"0XBEEF", "0x0000beef", true},
		{"0x123456789", "", false},
		{"0xgg", "", false},
		{"", "", false},
		{"0x", "", false},
	} {
		if got, ok := NormalizeCardSerial(tc.in); got != tc.want || ok != tc.ok {
			t.Errorf("NormalizeCardSerial(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestMMCDisk(t *testing.T) {
	for in, want := range map[string]string{
		"mmcblk0": "mmcblk0", "mmcblk0p2": "mmcblk0", "mmcblk12p10": "mmcblk12",
		"mmcblk0boot0": "", "mmcblk0rpmb": "", "mmcblk": "", "mmcblk0p": "", "vda2": "", "": "",
	} {
		if got := mmcDisk(in); got != want {
			t.Errorf("mmcDisk(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestReadVersion: version 1 files (every node has a MAC) still read;
// a newer format is refused rather than half understood.
func TestReadVersion(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		json string
		ok   bool
	}{
		{`{"version":1,"nodes":[{"name":"a","mac":"00:1e:06:00:00:01"}]}`, true},
		{`{"version":2,"nodes":[{"name":"a","serial_number":"0a1b"}]}`, true},
		{`{"version":3,"nodes":[]}`, false},
		{`{"nodes":[]}`, false},
	} {
		p := filepath.Join(dir, "c.json")
		os.WriteFile(p, []byte(tc.json), 0o644)
		if _, err := Read(p); (err == nil) != tc.ok {
			t.Errorf("%s: err %v, want ok=%v", tc.json, err, tc.ok)
		}
	}
}
