package bootstate

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const (
	idA = "0123456789abcdef"
	idB = "fedcba9876543210"
)

// uBootExport is what U-Boot 2023.01 (u-boot-qemu) left in memory and
// wrote with fatwrite after `setenv good 0123456789abcdef; setenv try
// fedcba9876543210; setenv tries 3; env export -t ${ramdisk_addr_r} good
// try tries`: keys sorted, newline after each, one NUL, ${filesize} 34
// (hex). The QEMU test in internal/build/uboot checks every rewrite too.
const uBootExport = "good=0123456789abcdef\ntries=3\ntry=fedcba9876543210\n\x00"

func TestEncodeMatchesUBoot(t *testing.T) {
	b, err := State{Good: idA, Try: idB, Tries: 3}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != uBootExport {
		t.Fatalf("encoded %q, U-Boot wrote %q", b, uBootExport)
	}
	if len(b) != Size || Size != 0x34 {
		t.Fatalf("size %d, Size %d, U-Boot's filesize 0x34", len(b), Size)
	}
	for tries := 0; tries <= MaxTries; tries++ {
		s := State{Good: idA, Try: idB, Tries: tries}
		b, err := s.Encode()
		if err != nil || len(b) != Size {
			t.Fatalf("%+v: %d bytes, %v", s, len(b), err)
		}
		got, err := Parse(b)
		if err != nil || got != s {
			t.Fatalf("round trip %+v: %+v, %v", s, got, err)
		}
	}
}

func TestParseRejects(t *testing.T) {
	good := uBootExport
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", "0 bytes"},
		{"no NUL", strings.TrimSuffix(good, "\x00") + "\n", "NUL"},
		{"order", "tries=3\ngood=0123456789abcdef\ntry=fedcba9876543210\n\x00", "canonical"},
		{"upper hex", strings.Replace(good, "abcdef", "ABCDEF", 1), "lowercase hex"},
		{"tries 4", strings.Replace(good, "tries=3", "tries=4", 1), "want 0 to 3"},
		{"tries letter", strings.Replace(good, "tries=3", "tries=x", 1), "one digit"},
		{"no equals", strings.Replace(good, "tries=3", "tries 3", 1), "no '='"},
		{"unknown key", strings.Replace(good, "tries=3", "xyzzy=3", 1), "unknown key"},
		{"twice", "good=0123456789abcdef\ngood=0123456789abcdef\ntry=12\n\x00", "twice"},
		{"CR", strings.Replace(good, "\ntry=fedcba9876543210", "\rtry=fedcba9876543210", 1), "3 lines"},
		{"short id", "good=0123456789abcde\ntries=3\ntry=fedcba98765432100\n\x00", "15 characters"},
		{"zeros", strings.Repeat("\x00", Size), "3 lines"},
		{"idle with tries", "good=0123456789abcdef\ntries=2\ntry=0123456789abcdef\n\x00", "want 0"},
		{"long", good + "x", "53 bytes"},
	} {
		_, err := Parse([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestTransitions(t *testing.T) {
	s, err := New(idA)
	if err != nil || s != (State{Good: idA, Try: idA}) {
		t.Fatalf("New: %+v %v", s, err)
	}
	if _, err := New("nothex!!nothex!!"); err == nil {
		t.Error("New accepted a bad id")
	}
	if _, err := s.TryVersion(idA); err == nil {
		t.Error("trying the good version accepted")
	}
	if _, err := s.TryVersion("0123"); err == nil {
		t.Error("short id accepted")
	}
	tr, err := s.TryVersion(idB)
	if err != nil || tr != (State{Good: idA, Try: idB, Tries: MaxTries}) {
		t.Fatalf("TryVersion: %+v %v", tr, err)
	}
	if c := tr.Commit(); c != (State{Good: idB, Try: idB}) {
		t.Errorf("Commit: %+v", c)
	}
	if c := (State{Good: idA, Try: idB}).ClearFailed(); c != s {
		t.Errorf("ClearFailed: %+v", c)
	}
	for _, st := range []State{s, tr, tr.Commit(), tr.ClearFailed()} {
		if err := st.Validate(); err != nil {
			t.Errorf("%+v: %v", st, err)
		}
	}
}

func TestBooted(t *testing.T) {
	const other = "1111111111111111"
	for _, tc := range []struct {
		name    string
		s       State
		running string
		trying  bool
		failed  string
	}{
		{"idle on good", State{idA, idA, 0}, idA, false, ""},
		{"first try", State{idA, idB, 2}, idB, true, ""},
		// U-Boot stepped 1 to 0 and booted the try: its last chance,
		// not a failure.
		{"last try", State{idA, idB, 0}, idB, true, ""},
		{"tries used up", State{idA, idB, 0}, idA, false, idB},
		// The try's files did not load; U-Boot tries again next boot.
		{"fell back, tries left", State{idA, idB, 2}, idA, false, ""},
		{"booted by hand", State{idA, idB, 0}, other, false, ""},
		{"no version on cmdline", State{idA, idB, 0}, "", false, ""},
	} {
		b := tc.s.Booted(tc.running)
		if b.Trying() != tc.trying {
			t.Errorf("%s: Trying %v, want %v", tc.name, b.Trying(), tc.trying)
		}
		id, ok := b.Failed()
		if id != tc.failed || ok != (tc.failed != "") {
			t.Errorf("%s: Failed %q %v, want %q", tc.name, id, ok, tc.failed)
		}
	}
}

func TestCmdlineVersion(t *testing.T) {
	for _, tc := range []struct {
		cmdline, want string
		ok            bool
	}{
		{"console=ttyAMA0 mkimage.version=" + idA + " panic=10", idA, true},
		{"mkimage.version=" + idB + " mkimage.version=" + idA, idA, true},
		{"console=ttyAMA0", "", false},
		{"mkimage.version=" + idA + "x", "", false},
		{"xmkimage.version=" + idA, "", false},
	} {
		got, ok := CmdlineVersion(tc.cmdline)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%q: %q %v, want %q %v", tc.cmdline, got, ok, tc.want, tc.ok)
		}
	}
}

func TestBootEnv(t *testing.T) {
	b, err := BootEnv("console=ttyAMA0 root=LABEL=root")
	if err != nil || string(b) != "bootargs=console=ttyAMA0 root=LABEL=root\n" {
		t.Errorf("%q %v", b, err)
	}
	for _, bad := range []string{"a\nbootcmd=reset", "a\\b", "a\x00", "a\r"} {
		if _, err := BootEnv(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

func TestReadWrite(t *testing.T) {
	dir := t.TempDir()
	if _, err := Read(dir); err == nil {
		t.Fatal("Read of an empty dir succeeded")
	}
	s1 := State{Good: idA, Try: idB, Tries: 3}
	// Missing files are created.
	if err := Write(dir, s1); err != nil {
		t.Fatal(err)
	}
	if got, err := Read(dir); err != nil || got != s1 {
		t.Fatalf("Read: %+v %v", got, err)
	}
	env, bak := filepath.Join(dir, EnvFile), filepath.Join(dir, BakFile)
	envIno, bakIno := inode(t, env), inode(t, bak)

	// Same size: rewritten in place (same inode, as on FAT the same
	// cluster).
	s2 := s1.Commit()
	if err := Write(dir, s2); err != nil {
		t.Fatal(err)
	}
	if inode(t, env) != envIno || inode(t, bak) != bakIno {
		t.Error("a same-size rewrite replaced the file")
	}
	for _, p := range []string{env, bak} {
		if b, _ := os.ReadFile(p); string(b) != string(must(s2.Encode())) {
			t.Errorf("%s holds %q", p, b)
		}
	}

	// A damaged state.env: Read falls back to state.bak.
	os.WriteFile(env, []byte(strings.Repeat("x", Size)), 0o644)
	if got, err := Read(dir); err != nil || got != s2 {
		t.Fatalf("fallback: %+v %v", got, err)
	}
	// Both damaged: an error naming both.
	os.WriteFile(bak, []byte("good="), 0o644)
	_, err := Read(dir)
	if err == nil || !strings.Contains(err.Error(), EnvFile) || !strings.Contains(err.Error(), BakFile) {
		t.Fatalf("both damaged: %v", err)
	}
	// Another size: replaced whole; both readable again.
	if err := Write(dir, s1); err != nil {
		t.Fatal(err)
	}
	if got, err := Read(dir); err != nil || got != s1 {
		t.Fatalf("after repair: %+v %v", got, err)
	}
	if b, _ := os.ReadFile(bak); string(b) != uBootExport {
		t.Errorf("state.bak %q", b)
	}
	// An invalid state writes nothing.
	if err := Write(dir, State{Good: idA, Try: idA, Tries: 1}); err == nil {
		t.Error("invalid state written")
	}
	if got, _ := Read(dir); got != s1 {
		t.Errorf("invalid write changed the state to %+v", got)
	}
	// A huge file at state.env is read no further than needed.
	os.WriteFile(env, make([]byte, 1<<20), 0o644)
	if got, err := Read(dir); err != nil || got != s1 {
		t.Errorf("huge state.env: %+v %v", got, err)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(uBootExport))
	f.Add([]byte("good=0123456789abcdef\ntries=0\ntry=0123456789abcdef\n\x00"))
	f.Add([]byte("tries=3\ngood=0123456789abcdef\ntry=fedcba9876543210\n\x00"))
	f.Add([]byte("good=\ntries=\ntry=\n\x00"))
	f.Add([]byte("bootargs=console=ttyAMA0\n"))
	f.Add(make([]byte, Size))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Parse(b)
		if err != nil {
			return
		}
		// Whatever parses is exactly what Encode writes back.
		enc, err := s.Encode()
		if err != nil || string(enc) != string(b) {
			t.Fatalf("Parse(%q) = %+v, encodes back to %q, %v", b, s, enc, err)
		}
	})
}
