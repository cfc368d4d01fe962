package disk

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/internal/ondisk"
)

// FuzzInspect reads disk heads as `mkimage inspect` and the flasher do:
// the MBR alone and with every board's bootloader regions. A table that
// parses and can be written again must read back the same.
func FuzzInspect(f *testing.F) {
	for _, name := range []string{"odroid-c2", "qemu-virt"} {
		l, err := Plan(board(f, name), 256*MiB, 512*MiB)
		if err != nil {
			f.Fatal(err)
		}
		b, err := l.MBR(0x1234abcd).Bytes()
		if err != nil {
			f.Fatal(err)
		}
		s := make([]byte, 4096)
		copy(s[440:], b)
		copy(s, "boot code")
		f.Add(s, l.Size)
	}
	all, err := boards.All()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte, size int64) {
		if size < 0 {
			return
		}
		r := bytes.NewReader(b)
		for _, bd := range append([]*boards.Board{nil}, all...) {
			Inspect(r, size, bd)
		}
		m, err := ondisk.ReadMBR(r)
		if err != nil {
			return
		}
		out, err := m.Bytes()
		if err != nil {
			return // tables we would not write (past 2^32 sectors)
		}
		s := make([]byte, ondisk.SectorSize)
		copy(s[ondisk.TableOffset:], out)
		back, err := ondisk.ReadMBR(bytes.NewReader(s))
		if err != nil || !reflect.DeepEqual(back, m) {
			t.Fatalf("table %+v wrote and read back as %+v (%v)", m, back, err)
		}
	})
}
