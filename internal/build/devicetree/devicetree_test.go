package devicetree

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/testenv"
)

// compile builds testdata/NAME.dts with the real dtc.
func compile(t *testing.T, name string) []byte {
	t.Helper()
	testenv.NeedTools(t, "dtc")
	out, err := exec.Command("dtc", "-q", "-I", "dts", "-O", "dtb", "testdata/"+name+".dts").Output()
	if err != nil {
		t.Fatalf("dtc: %v", err)
	}
	return out
}

// decompile prints a DTB as dtc reads it.
func decompile(t *testing.T, dtb []byte) string {
	t.Helper()
	f := t.TempDir() + "/x.dtb"
	if err := os.WriteFile(f, dtb, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("dtc", "-q", "-I", "dtb", "-O", "dts", f).CombinedOutput()
	if err != nil {
		t.Fatalf("dtc -I dtb rejects our bytes: %v\n%s", err, out)
	}
	return string(out)
}

func TestSelect(t *testing.T) {
	tr, err := Parse(compile(t, "board"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		sel   string
		paths []string
		err   string
	}{
		{sel: "/soc/mmc@1000", paths: []string{"/soc/mmc@1000"}},
		{sel: "alias:mmc0", paths: []string{"/soc/mmc@1000"}},
		{sel: "compatible:test,sd-mmc", paths: []string{"/soc/mmc@1000", "/soc/mmc@2000"}},
		{sel: "compatible:test,generic-mmc", paths: []string{"/soc/mmc@1000"}},
		{sel: "/soc/nope", err: "no node /soc/nope"},
		{sel: "alias:mmc9", err: `no alias "mmc9" in this device tree (it has mmc0)`},
		{sel: "compatible:nope", err: `no node is compatible with "nope"`},
		{sel: "mmc0", err: "bad node selector"},
	} {
		nodes, err := tr.Select(tt.sel)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Select(%q) error = %v, want %q", tt.sel, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Select(%q): %v", tt.sel, err)
			continue
		}
		var got []string
		for _, n := range nodes {
			got = append(got, tr.Path(n))
		}
		if strings.Join(got, " ") != strings.Join(tt.paths, " ") {
			t.Errorf("Select(%q) = %v, want %v", tt.sel, got, tt.paths)
		}
	}
	if n, _ := tr.ByPath("/soc/mmc@2000"); tr.Enabled(n) {
		t.Error("mmc@2000 is disabled")
	}
	if n, _ := tr.ByPath("/soc/mmc@1000"); !tr.Enabled(n) || strings.Join(tr.Compatible(n), ",") != "test,sd-mmc,test,generic-mmc" {
		t.Error("mmc@1000: enabled, two compatibles")
	}
}

// TestApply edits a tree and lets dtc judge the bytes.
func TestApply(t *testing.T) {
	raw := compile(t, "board")
	tr, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	err = tr.Apply([]Fixup{
		{Node: "/gpio-regulator-io", Why: "open drain", Cell: []CellEdit{{Property: "gpios", Index: 2, From: 0, To: 6}}},
		{Node: "alias:mmc0", Why: "no UHS", Delete: []string{"sd-uhs-sdr50"},
			Set: map[string]any{"max-frequency": int64(50000000), "label": "sd", "clock-names": []any{"core", "clkin"}, "cap-sd-highspeed": true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := tr.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	dts := decompile(t, out)
	for _, want := range []string{
		"gpios = <0x06 0x03 0x06>;", // phandle of the bank, pin 3, GPIO_OPEN_DRAIN
		"max-frequency = <0x2faf080>;",
		`label = "sd";`,
		`clock-names = "core\0clkin";`,
		"cap-sd-highspeed;",
	} {
		if !strings.Contains(dts, want) {
			t.Errorf("dtc shows no %q in\n%s", want, dts)
		}
	}
	if strings.Contains(dts, "sd-uhs-sdr50") {
		t.Error("sd-uhs-sdr50 still there")
	}
	// Reproducible: the same edits on the same input give the same bytes,
	// and our own output reads back to the same bytes.
	again, _ := Parse(raw)
	again.Apply([]Fixup{
		{Node: "/gpio-regulator-io", Why: "open drain", Cell: []CellEdit{{Property: "gpios", Index: 2, From: 0, To: 6}}},
		{Node: "alias:mmc0", Why: "no UHS", Delete: []string{"sd-uhs-sdr50"},
			Set: map[string]any{"max-frequency": int64(50000000), "label": "sd", "clock-names": []any{"core", "clkin"}, "cap-sd-highspeed": true}},
	})
	b2, _ := again.Bytes()
	if !bytes.Equal(out, b2) {
		t.Error("the same fix-ups gave different bytes")
	}
	rt, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	b3, _ := rt.Bytes()
	if !bytes.Equal(out, b3) {
		t.Error("parse + write of our own output changed it")
	}
}

func TestApplyRefuses(t *testing.T) {
	raw := compile(t, "board")
	for _, tt := range []struct {
		name string
		f    Fixup
		err  string
	}{
		{"no node", Fixup{Node: "/gpio-regulator-tf_io", Why: "x", Delete: []string{"gpios"}}, "no node /gpio-regulator-tf_io"},
		{"no property", Fixup{Node: "/soc/mmc@1000", Why: "x", Delete: []string{"sd-uhs-sdr104"}}, "delete sd-uhs-sdr104: the node has no such property"},
		{"cell drifted", Fixup{Node: "/gpio-regulator-io", Why: "x", Cell: []CellEdit{{Property: "gpios", Index: 1, From: 4, To: 6}}}, "cell 1 of gpios is 0x3, the fix-up expects 0x4"},
		{"cell out of range", Fixup{Node: "/gpio-regulator-io", Why: "x", Cell: []CellEdit{{Property: "gpios", Index: 3, To: 6}}}, "the property has 12 bytes"},
		{"no why", Fixup{Node: "/soc", Delete: []string{"ranges"}}, "why is empty"},
		{"nothing", Fixup{Node: "/soc", Why: "x"}, "changes nothing"},
		{"bad value", Fixup{Node: "/soc", Why: "x", Set: map[string]any{"x": int64(-1)}}, "does not fit a 32-bit cell"},
		{"mixed list", Fixup{Node: "/soc", Why: "x", Set: map[string]any{"x": []any{"a", int64(1)}}}, "mixes strings and numbers"},
	} {
		tr, err := Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.Apply([]Fixup{tt.f}); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.err)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	raw := compile(t, "board")
	for _, tt := range []struct {
		name string
		b    []byte
		err  string
	}{
		{"empty", nil, "not a device tree blob"},
		{"text", []byte(strings.Repeat("/dts-v1/; ", 10)), "not a device tree blob"},
		{"truncated", raw[:len(raw)/2], "header says"},
	} {
		if _, err := Parse(tt.b); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.err)
		}
	}
}

func FuzzParse(f *testing.F) {
	if raw, err := exec.Command("dtc", "-q", "-I", "dts", "-O", "dtb", "testdata/board.dts").Output(); err == nil {
		f.Add(raw)
	}
	// The boards' DTBs from Debian's kernel package, when a build has
	// unpacked it into the cache.
	for _, glob := range []string{"amlogic/meson-gxbb-odroidc2.dtb", "marvell/armada-8040-mcbin*.dtb"} {
		for _, p := range testenv.CacheFiles("kernels/*/dtbs/" + glob) {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := Parse(b)
		if err != nil {
			return
		}
		for _, n := range tr.Nodes() {
			tr.Path(n)
			tr.Compatible(n)
		}
		if _, err := tr.Bytes(); err != nil {
			t.Fatal(err)
		}
	})
}
