package kernelconfig

import (
	"bytes"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/boards"
)

func frag(t *testing.T, name, text string) *Fragment {
	t.Helper()
	f, err := ParseFragment(name, strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestParseFragment(t *testing.T) {
	f := frag(t, "a.config", "# top\nCONFIG_A=y\n# @optional\n# CONFIG_B is not set\nCONFIG_S=\"hi there\"\n# @builtin\nCONFIG_N=0x10\n")
	want := []Setting{
		{"A", "y", Required, "a.config", 2},
		{"B", "n", Optional, "a.config", 4},
		{"S", `"hi there"`, Optional, "a.config", 5},
		{"N", "0x10", Builtin, "a.config", 7},
	}
	if len(f.Settings) != len(want) {
		t.Fatalf("got %v, want %v", f.Settings, want)
	}
	for i := range want {
		if f.Settings[i] != want[i] {
			t.Errorf("setting %d = %+v, want %+v", i, f.Settings[i], want[i])
		}
	}
}

func TestParseFragmentErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"CONFIG_A=yes\n", "x.config:1: CONFIG_A has bad value"},
		{"A=y\n", `x.config:1: "A=y" is not`},
		{"CONFIG_A=y\n# @sometimes\n", "x.config:2: unknown marker @sometimes"},
		{"CONFIG_A=\"open\n", "bad value"},
	} {
		_, err := ParseFragment("x.config", strings.NewReader(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.text, err, tc.want)
		}
	}
}

func TestMerge(t *testing.T) {
	a := frag(t, "a", "CONFIG_X=y\nCONFIG_Y=m\nCONFIG_Z=y\n# @optional\nCONFIG_O=y\n")
	b := frag(t, "b", "# @optional\nCONFIG_X=y\n# @required\n# CONFIG_Y is not set\nCONFIG_O=y\nCONFIG_W=y\n")
	c := frag(t, "c", "# @optional\nCONFIG_Y=y\n")
	m := Merge(a, b, c)
	type want struct {
		sym, val string
		mode     Mode
		src      string
	}
	for i, w := range []want{
		{"X", "y", Required, "b:2"}, // same value: stronger mode kept, later source
		{"Y", "y", Optional, "c:2"}, // later wins, mode included
		{"Z", "y", Required, "a:3"}, // untouched
		{"O", "y", Required, "b:5"}, // optional then required: required
		{"W", "y", Required, "b:6"}, // new symbols go last
	} {
		s := m.Settings[i]
		if s.Symbol != w.sym || s.Value != w.val || s.Mode != w.mode || s.Source() != w.src {
			t.Errorf("setting %d = %+v, want %+v", i, s, w)
		}
	}
	if len(m.Settings) != 5 {
		t.Errorf("got %d settings, want 5", len(m.Settings))
	}
	var got []string
	for _, c := range m.Conflicts {
		got = append(got, c.String())
	}
	wantC := []string{
		"CONFIG_Y: m (a:2) overridden by n (b:4)",
		"CONFIG_Y: n (b:4) overridden by y (c:2)",
	}
	if strings.Join(got, "\n") != strings.Join(wantC, "\n") {
		t.Errorf("conflicts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantC, "\n"))
	}
}

// The merged output must parse back to the same settings and modes.
func TestMergedRoundTrip(t *testing.T) {
	m := Merge(frag(t, "a", "CONFIG_A=y\n# @optional\n# CONFIG_B is not set\nCONFIG_C=\"s\"\n# @builtin\nCONFIG_D=y\n"))
	var buf bytes.Buffer
	if _, err := m.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	back := frag(t, "merged", buf.String())
	if len(back.Settings) != len(m.Settings) {
		t.Fatalf("round trip: %d settings, want %d:\n%s", len(back.Settings), len(m.Settings), buf.String())
	}
	for i, s := range back.Settings {
		o := m.Settings[i]
		if s.Symbol != o.Symbol || s.Value != o.Value || s.Mode != o.Mode {
			t.Errorf("round trip %d: %+v, want %+v", i, s, o)
		}
	}
}

// Every board's fragments exist and merge without conflicts.
func TestBoardsFragments(t *testing.T) {
	all, err := boards.All()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range all {
		frags, err := ForBoard(b)
		if err != nil {
			t.Fatalf("%s: %v", b.Name, err)
		}
		m := Merge(frags...)
		if len(m.Conflicts) > 0 {
			t.Errorf("%s: conflicts %v", b.Name, m.Conflicts)
		}
		for _, sym := range []string{"BTRFS_FS", "DEVTMPFS", "BLK_DEV_INITRD", "RD_XZ", "IPC_NS", "NFT_MASQ"} {
			if s, ok := m.Lookup(sym); !ok || s.Value != "y" || s.Mode == Optional {
				t.Errorf("%s: %s = %+v, want required y", b.Name, sym, s)
			}
		}
	}
}

func TestUnknownFragment(t *testing.T) {
	for _, n := range []string{"nosuch", "../base", "base.config", "soc/nosuch"} {
		if _, err := Embedded(n); err == nil || !strings.Contains(err.Error(), "known: base") {
			t.Errorf("Embedded(%q) err = %v, want unknown with list", n, err)
		}
	}
	b := &boards.Board{Name: "x", KernelFragments: []string{"base", "soc/nosuch"}}
	if _, err := ForBoard(b); err == nil || !strings.Contains(err.Error(), `board x: unknown kernel config fragment "soc/nosuch"`) {
		t.Errorf("ForBoard err = %v", err)
	}
}
