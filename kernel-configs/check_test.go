package kernelconfig

import (
	"bytes"
	"compress/gzip"
	"strings"
	"testing"
)

func TestParseConfigGzip(t *testing.T) {
	text := "# comment\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_S=\"x y\"\n"
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(text))
	zw.Close()
	for name, data := range map[string][]byte{"plain": []byte(text), "gzip": gz.Bytes()} {
		c, err := ParseConfig(name, bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if c.Get("A") != "y" || c.Get("B") != "n" || c.Get("S") != `"x y"` || c.Get("C") != "n" {
			t.Errorf("%s: %v", name, c)
		}
	}
	if _, err := ParseConfig("empty", strings.NewReader("hello\n")); err == nil || !strings.Contains(err.Error(), "no CONFIG_ lines") {
		t.Errorf("err = %v", err)
	}
}

func TestSatisfied(t *testing.T) {
	for _, tc := range []struct {
		val  string
		mode Mode
		got  string
		ok   bool
	}{
		{"y", Required, "y", true},
		{"y", Required, "m", true},
		{"y", Builtin, "m", false},
		{"y", Builtin, "y", true},
		{"y", Required, "n", false},
		{"m", Required, "y", true},
		{"m", Required, "n", false},
		{"n", Required, "n", true},
		{"n", Required, "m", false},
		{`"a"`, Required, `"a"`, true},
		{`"a"`, Required, `"b"`, false},
		{"16", Required, "16", true},
	} {
		if got := satisfied(Setting{Value: tc.val, Mode: tc.mode}, tc.got); got != tc.ok {
			t.Errorf("want %s (%s), have %s: %v, want %v", tc.val, tc.mode, tc.got, got, tc.ok)
		}
	}
}

func TestCheck(t *testing.T) {
	cfg := Config{}
	lxc, _ := RequirementSet("lxc")
	for _, s := range lxc {
		cfg[s.Symbol] = "m"
	}
	cfg["USER_NS"] = "n"        // required: fails
	delete(cfg, "NETLINK_DIAG") // optional: note only
	rep, err := Check(cfg, []string{"lxc"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed != 1 {
		t.Errorf("failed = %d, want 1", rep.Failed)
	}
	status := map[string]string{}
	for _, r := range rep.Rows {
		status[r.Symbol] = r.Status
	}
	if status["USER_NS"] != "MISSING" || status["NETLINK_DIAG"] != "missing (optional)" || status["VETH"] != "ok" {
		t.Errorf("statuses: USER_NS %q NETLINK_DIAG %q VETH %q", status["USER_NS"], status["NETLINK_DIAG"], status["VETH"])
	}
	var buf bytes.Buffer
	rep.WriteTable(&buf)
	if !strings.Contains(buf.String(), "CONFIG_USER_NS") || !strings.Contains(buf.String(), "1 required missing") {
		t.Errorf("table:\n%s", buf.String())
	}
	if _, err := Check(cfg, []string{"nosuch"}); err == nil || !strings.Contains(err.Error(), `requirement set "nosuch"`) {
		t.Errorf("err = %v", err)
	}
	rep, err = Check(cfg, []string{"board:qemu-virt"})
	if err != nil || len(rep.Rows) < 50 {
		t.Errorf("board set: %v, %d rows", err, len(rep.Rows))
	}
}
