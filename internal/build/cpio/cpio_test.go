package cpio_test

import (
	"bytes"
	"crypto/sha256"
	"os/exec"
	"strings"
	"testing"
	"time"

	cg "github.com/cavaliergopher/cpio"

	"github.com/mkimage/mkimage/internal/build/cpio"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/testenv"
)

var epoch = time.Unix(1700000000, 0)

func sample(t testing.TB) *fstree.Tree {
	t.Helper()
	tr := fstree.New(epoch)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := tr.MkdirAll("etc/nodeinit", epoch)
	must(err)
	_, err = tr.MkdirAll("dev", epoch)
	must(err)
	must(tr.Put("init", fstree.NewSymlink("bbin/nodeinit", epoch)))
	must(tr.Put("etc/nodeinit/modules", fstree.NewFile(0o644, []byte("/lib/modules/x/a.ko\n"), epoch)))
	must(tr.Put("etc/odd", fstree.NewFile(0o600, []byte("abc"), epoch))) // size not a multiple of 4
	must(tr.Put("etc/empty", fstree.NewFile(0o644, nil, epoch)))
	must(tr.Put("dev/console", &fstree.Inode{Mode: fstree.ModeChar | 0o600, Major: 5, Minor: 1, Mtime: epoch}))
	must(tr.Put("dev/sda", &fstree.Inode{Mode: fstree.ModeBlock | 0o660, Major: 8, Minor: 0, Mtime: epoch}))
	must(tr.Put("dev/fifo", &fstree.Inode{Mode: fstree.ModeFIFO | 0o644, Mtime: epoch}))
	link := fstree.NewFile(0o4755, []byte("hard linked data"), epoch)
	must(tr.Put("etc/h1", link))
	must(tr.Put("etc/h2", link))
	return tr
}

func write(t testing.TB, tr *fstree.Tree) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := cpio.Write(&b, tr); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestRoundTrip(t *testing.T) {
	data := write(t, sample(t))
	if !bytes.Equal(data, write(t, sample(t))) {
		t.Fatal("two writes of the same tree differ")
	}
	back, err := cpio.Read(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if again := write(t, back); !bytes.Equal(again, data) {
		t.Errorf("write(read(x)) != x: %x vs %x", sha256.Sum256(again), sha256.Sum256(data))
	}
	tests := []struct {
		path       string
		mode       uint32
		content    string
		major, min uint32
		target     string
	}{
		{path: "dev/console", mode: fstree.ModeChar | 0o600, major: 5, min: 1},
		{path: "dev/sda", mode: fstree.ModeBlock | 0o660, major: 8, min: 0},
		{path: "dev/fifo", mode: fstree.ModeFIFO | 0o644},
		{path: "init", mode: fstree.ModeSymlink | 0o777, target: "bbin/nodeinit"},
		{path: "etc/odd", mode: fstree.ModeRegular | 0o600, content: "abc"},
		{path: "etc/empty", mode: fstree.ModeRegular | 0o644},
		{path: "etc/h1", mode: fstree.ModeRegular | 0o4755, content: "hard linked data"},
		{path: "etc/h2", mode: fstree.ModeRegular | 0o4755, content: "hard linked data"},
	}
	for _, tt := range tests {
		n, ok := back.Lookup(tt.path)
		if !ok {
			t.Errorf("%s missing", tt.path)
			continue
		}
		got, _ := fstree.ReadAll(n.Content)
		if n.Mode != tt.mode || string(got) != tt.content || n.Major != tt.major || n.Minor != tt.min || n.Target != tt.target || !n.Mtime.Equal(epoch) {
			t.Errorf("%s: mode %o content %q dev %d:%d target %q mtime %v", tt.path, n.Mode, got, n.Major, n.Minor, n.Target, n.Mtime)
		}
	}
	h1, _ := back.Lookup("etc/h1")
	h2, _ := back.Lookup("etc/h2")
	if h1 != h2 {
		t.Error("hard link came back as two inodes")
	}
}

// TestGNUCpio lets GNU cpio judge the archive: names, types, device
// numbers, owners and the hard link's data.
func TestGNUCpio(t *testing.T) {
	testenv.NeedTools(t, "cpio")
	data := write(t, sample(t))
	cmd := exec.Command("cpio", "-tv", "--quiet")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -tv: %v\n%s", err, out)
	}
	listing := string(out)
	for _, want := range []string{
		"crw-------   1 root     root       5,   1 Nov 14  2023 dev/console",
		"brw-rw----   1 root     root       8,   0 Nov 14  2023 dev/sda",
		"lrwxrwxrwx   1 root     root           13 Nov 14  2023 init -> bbin/nodeinit",
		"-rwsr-xr-x   2 root     root           16 Nov 14  2023 etc/h2",
		"-rw-------   1 root     root            3 Nov 14  2023 etc/odd",
	} {
		if !strings.Contains(listing, want+"\n") {
			t.Errorf("cpio -tv lacks %q:\n%s", want, listing)
		}
	}
	// The other library reads it too (it ignores device numbers).
	r := cg.NewReader(bytes.NewReader(data))
	n := 0
	for {
		h, err := r.Next()
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("cavaliergopher/cpio: %v after %d entries", err, n)
			}
			break
		}
		n++
		_ = h
	}
	if n != 12 {
		t.Errorf("cavaliergopher/cpio read %d entries, want 12", n)
	}
}

func TestReadErrors(t *testing.T) {
	data := write(t, sample(t))
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "without a TRAILER!!!"},
		{"no trailer", data[:len(data)-124], "without a TRAILER!!!"},
		{"truncated", data[:len(data)-130], "unexpected EOF"},
		{"odc", []byte(strings.Repeat("070707", 40)), "bad magic"},
		{"escape", append([]byte("070701"+strings.Repeat("00000000", 11)+"00000006"+"00000000"), "../x\x00\x00"...), "leaves the root"},
	}
	for _, tt := range tests {
		_, err := cpio.Read(bytes.NewReader(tt.data))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
}
