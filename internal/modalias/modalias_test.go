package modalias

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		// Real aliases from Debian's 6.1 arm64 modules and modaliases
		// QEMU virt's devices show.
		{"pci:v00001AF4d00001000sv*sd*bc*sc*i*", "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00", true},
		{"pci:v00001AF4d00001000sv*sd*bc*sc*i*", "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", false},
		{"pci:v00001AF4d*sv*sd*bc*sc*i*", "pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00", true},
		{"virtio:d00000002v*", "virtio:d00000002v554D4551", true},
		{"virtio:d00000002v*", "virtio:d00000001v554D4551", false},
		{"virtio:d00000002v*", "virtio:d00000002", false},
		{"of:N*T*Cregulator-fixed", "of:Nregulator-testT(null)Cregulator-fixed", true},
		{"of:N*T*Cregulator-fixed", "of:Nregulator-testT(null)Cregulator-fixed-clock", false},
		{"of:N*T*Cregulator-fixedC*", "of:Nregulator-testT(null)Cregulator-fixed", false},
		{"of:N*T*Cregulator-fixedC*", "of:NregT(null)Cregulator-fixedCregulator-generic", true},
		{"of:N*T*Cvirtio,mmio", "of:Nvirtio_mmioT(null)Cvirtio,mmio", true},
		// '*' crosses '/' (fnmatch without FNM_PATHNAME), unlike path.Match.
		{"of:N*T*Cfoo", "of:Na/bT(null)Cfoo", true},
		{"acpi*:LNRO0005:*", "acpi:LNRO0005:", true},
		{"usb:v*p*d*dc*dsc*dp*ic09isc*ip*in*", "usb:v1D6Bp0002d0601dc09dsc00dp01ic09isc00ip00in00", true},
		// Sets, ranges, complements, quoting.
		{"dmi:*:pn[Xx]1*", "dmi:bvnA:pnx1c", true},
		{"dmi:*:pn[Xx]1*", "dmi:bvnA:pnY1c", false},
		{"a[!0-9]c", "abc", true},
		{"a[!0-9]c", "a5c", false},
		{"a[^0-9]c", "a5c", false},
		{"a[]]c", "a]c", true},
		{"a[a-]c", "a-c", true},
		{"a\\*c", "a*c", true},
		{"a\\*c", "abc", false},
		{"a[bc", "a[bc", true}, // no ']': a literal '['
		{"?", "", false},
		{"*", "", true},
		{"", "", true},
		{"**x", "x", true},
		{"*a*b", "xaxaxb", true},
		{"*a*b", "xaxaxbc", false},
	} {
		if got := Match(tc.pattern, tc.s); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

func testIndex() *Index {
	return &Index{
		Modules: []Module{
			{Name: "virtio_blk", Path: "/lib/modules/6.1/kernel/drivers/block/virtio_blk.ko", Load: []string{"virtio", "virtio_ring", "virtio_blk"}},
			{Name: "virtio", Path: "/lib/modules/6.1/kernel/drivers/virtio/virtio.ko", Load: []string{"virtio"}},
			{Name: "virtio_ring", Path: "/lib/modules/6.1/kernel/drivers/virtio/virtio_ring.ko", Load: []string{"virtio_ring"}},
			{Name: "fixed", Path: "/lib/modules/6.1/kernel/drivers/regulator/fixed.ko", Load: []string{"fixed"}},
		},
		Aliases: []Alias{
			{"virtio:d00000002v*", "virtio_blk"},
			{"of:N*T*Cregulator-fixedC*", "fixed"},
			{"of:N*T*Cregulator-fixed", "fixed"},
			{"of:N*T*Cregulator-fixed", "fixed"}, // once in the file
		},
	}
}

func TestIndexRoundTrip(t *testing.T) {
	x := testIndex()
	b, err := x.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := header +
		"module fixed /lib/modules/6.1/kernel/drivers/regulator/fixed.ko fixed\n" +
		"module virtio /lib/modules/6.1/kernel/drivers/virtio/virtio.ko virtio\n" +
		"module virtio_blk /lib/modules/6.1/kernel/drivers/block/virtio_blk.ko virtio virtio_ring virtio_blk\n" +
		"module virtio_ring /lib/modules/6.1/kernel/drivers/virtio/virtio_ring.ko virtio_ring\n" +
		"alias of:N*T*Cregulator-fixed fixed\n" +
		"alias of:N*T*Cregulator-fixedC* fixed\n" +
		"alias virtio:d00000002v* virtio_blk\n"
	if string(b) != want {
		t.Fatalf("Marshal:\n%s\nwant:\n%s", b, want)
	}
	y, err := Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	again, _ := y.Marshal()
	if !bytes.Equal(again, b) {
		t.Errorf("parse and marshal again:\n%s", again)
	}
	m, ok := y.Module("virtio_blk")
	if !ok || !reflect.DeepEqual(m.Load, []string{"virtio", "virtio_ring", "virtio_blk"}) {
		t.Errorf("Module(virtio_blk) = %+v, %v", m, ok)
	}
	if got := y.Lookup("of:NtestT(null)Cregulator-fixed"); !reflect.DeepEqual(got, []string{"fixed"}) {
		t.Errorf("Lookup regulator = %v", got)
	}
	if got := y.Lookup("virtio:d00000001v554D4551"); got != nil {
		t.Errorf("Lookup virtio-net = %v, want nothing", got)
	}
}

func TestIndexRejects(t *testing.T) {
	for _, tc := range []struct{ name, data, want string }{
		{"unknown record", "modul x /x.ko x\n", "line 1"},
		{"missing dependency", "module a /a.ko b a\n", "needs b"},
		{"not in own order", "module a /a.ko\n", "line 1"},
		{"not in own order 2", "module a /a.ko b\nmodule b /b.ko b\n", "own load order"},
		{"alias of nothing", "module a /a.ko a\nalias x* b\n", "alias"},
		{"twice", "module a /a.ko a\nmodule a /b.ko a\n", "twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
