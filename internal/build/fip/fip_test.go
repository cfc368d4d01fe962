package fip

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

func TestUUIDStrings(t *testing.T) {
	for _, tc := range []struct {
		u          UUID
		text, name string
	}{
		{BL2, "0becf95f-224d-4d3e-a544-c39d81c73f0a", "BL2"},
		{BL30, "3dfd6697-be89-49e8-ae5d-78a140608213", "BL30"},
		{BL301, "aabbccdd-abcd-efef-abcd-12345678abcd", "BL301"},
		{BL31, "6d08d447-fe4c-4698-9b95-2950cbbd5a00", "BL31"},
		{BL33, "a7eed0d6-eafc-4bd5-9782-9934f234b6e4", "BL33"},
	} {
		if tc.u.String() != tc.text || tc.u.Name() != tc.name {
			t.Errorf("got %s %s, want %s %s", tc.u, tc.u.Name(), tc.text, tc.name)
		}
	}
	// Stored little-endian in the first three fields, as ATF's uuid_t.
	if BL2[0] != 0x5f || BL2[3] != 0x0b || BL2[4] != 0x4d || BL2[8] != 0xa5 {
		t.Errorf("BL2 bytes % x", BL2[:])
	}
	if u := (UUID{1}); u.Name() != u.String() {
		t.Errorf("unknown UUID named %s", u.Name())
	}
}

func TestMarshalParse(t *testing.T) {
	toc := &TOC{Serial: 0x12345678, Entries: []Entry{
		{UUID: BL30, Offset: 0x4000, Size: 100},
		{UUID: BL33, Offset: 0x8000, Size: 0x4000, Flags: 1},
	}, End: 0xC000}
	b, err := toc.Marshal(0x4000)
	if err != nil {
		t.Fatal(err)
	}
	data := append(b, make([]byte, 0x8000)...)
	got, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Serial != toc.Serial || got.End != toc.End || len(got.Entries) != 2 || got.Entries[1] != toc.Entries[1] {
		t.Errorf("round trip: %+v", got)
	}
	if len(Payload(data, got.Entries[0])) != 100 {
		t.Error("payload length")
	}
	if _, err := toc.Marshal(16 + 40*2); err == nil {
		t.Error("a TOC larger than its buffer was written")
	}
}

func TestParseRejects(t *testing.T) {
	hdr := func(entries ...[3]uint64) []byte {
		b := make([]byte, 0x200)
		binary.LittleEndian.PutUint32(b, Name)
		for i, e := range entries {
			at := 16 + 40*i
			b[at] = byte(e[0])
			binary.LittleEndian.PutUint64(b[at+16:], e[1])
			binary.LittleEndian.PutUint64(b[at+24:], e[2])
		}
		return b
	}
	noEnd := make([]byte, 16+40*3)
	binary.LittleEndian.PutUint32(noEnd, Name)
	for i := 0; i < 3; i++ {
		noEnd[16+40*i] = 1
		binary.LittleEndian.PutUint64(noEnd[16+40*i+16:], 0x80)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "no FIP TOC"},
		{"other magic", make([]byte, 64), "no FIP TOC"},
		{"no terminator", noEnd, "no terminating entry"},
		{"past end", hdr([3]uint64{1, 0x100, 0x200}), "past the end"},
		{"huge size", hdr([3]uint64{1, 0x100, 1 << 63}), "past the end"},
		{"inside TOC", hdr([3]uint64{1, 8, 16}), "overlaps the TOC"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := Parse(nil); !errors.Is(err, ErrNotFIP) {
		t.Errorf("not a FIP: %v", err)
	}
}
