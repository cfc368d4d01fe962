package kbuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/filehash"
)

func tarball(t *testing.T, files map[string]string) string {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, body := range files {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(body))
	}
	tw.Close()
	zw.Close()
	p := filepath.Join(t.TempDir(), "linux.tar.gz")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

var tinyTree = map[string]string{
	"linux-9.9/Makefile":           "# SPDX\nVERSION = 9\nPATCHLEVEL = 9\nSUBLEVEL = 1\nEXTRAVERSION = -rc1\nNAME = Test\n",
	"linux-9.9/arch/arm64/Kconfig": "config ARM64\n\tdef_bool y\n",
}

func TestOpenSourceTarball(t *testing.T) {
	tb := tarball(t, tinyTree)
	cache := t.TempDir()
	var log bytes.Buffer
	s, err := OpenSource(tb, cache, &log)
	if err != nil {
		t.Fatal(err)
	}
	sum, _ := filehash.SHA256(tb)
	if s.Version != "9.9.1-rc1" || s.ID != "sha256:"+sum || !s.Cacheable() {
		t.Errorf("source %+v", s)
	}
	if s.Dir != filepath.Join(cache, "src", sum, "linux-9.9") {
		t.Errorf("dir %s", s.Dir)
	}
	if !strings.Contains(log.String(), "unpacking") {
		t.Errorf("no unpacking line: %q", log.String())
	}
	// Once: the second open finds the tree and prints nothing.
	log.Reset()
	if _, err := OpenSource(tb, cache, &log); err != nil || log.Len() != 0 {
		t.Errorf("second open: %v, %q", err, log.String())
	}
	left, _ := filepath.Glob(filepath.Join(cache, "src", ".unpack-*"))
	if len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
	// No progress writer: a cold cache unpacks quietly (it crashed).
	if _, err := OpenSource(tb, t.TempDir(), nil); err != nil {
		t.Errorf("open with no progress writer: %v", err)
	}
}

func TestOpenSourceDir(t *testing.T) {
	tb := tarball(t, tinyTree)
	s, err := OpenSource(tb, t.TempDir(), nil_())
	if err != nil {
		t.Fatal(err)
	}
	d, err := OpenSource(s.Dir, t.TempDir(), nil_())
	if err != nil {
		t.Fatal(err)
	}
	if d.Cacheable() || d.ID != "dir:"+s.Dir || d.Version != "9.9.1-rc1" {
		t.Errorf("dir source %+v", d)
	}
}

func TestOpenSourceErrors(t *testing.T) {
	junk := filepath.Join(t.TempDir(), "junk.tar.xz")
	os.WriteFile(junk, []byte("not a tarball"), 0o644)
	for _, tc := range []struct{ path, want string }{
		{junk, junk + ": tar:"},
		{tarball(t, map[string]string{"x/README": "hi"}), "no kernel tree with arch/arm64/Kconfig"},
		{tarball(t, map[string]string{"l/Makefile": "all:\n", "l/arch/arm64/Kconfig": ""}), "no VERSION/PATCHLEVEL"},
		{"/nonexistent/linux.tar.xz", "no such file"},
	} {
		cache := t.TempDir()
		_, err := OpenSource(tc.path, cache, nil_())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.path, err, tc.want)
		}
		left, _ := filepath.Glob(filepath.Join(cache, "src", ".unpack-*"))
		if len(left) != 0 {
			t.Errorf("%s: left behind %v", tc.path, left)
		}
	}
}

func TestKey(t *testing.T) {
	s := &Source{ID: "sha256:aa"}
	base := BuildOptions{Config: []byte("CONFIG_A=y\n"), Toolchain: Toolchain{Version: "gcc 12", MakeVars: []string{"CROSS_COMPILE=x-"}}}
	k := s.Key(base)
	for name, o := range map[string]BuildOptions{
		"config":    {Config: []byte("CONFIG_A=m\n"), Toolchain: base.Toolchain},
		"toolchain": {Config: base.Config, Toolchain: Toolchain{Version: "gcc 13", MakeVars: base.Toolchain.MakeVars}},
		"llvm":      {Config: base.Config, Toolchain: Toolchain{Version: "gcc 12", MakeVars: []string{"LLVM=1"}}},
		"dtbs":      {Config: base.Config, Toolchain: base.Toolchain, DTBs: []string{"a/b.dtb"}},
	} {
		if s.Key(o) == k {
			t.Errorf("%s change keeps the key", name)
		}
	}
	if (&Source{ID: "sha256:bb"}).Key(base) == k {
		t.Errorf("source change keeps the key")
	}
	base.Jobs = 7
	if s.Key(base) != k {
		t.Errorf("jobs change the key")
	}
}

func TestResolveBadBase(t *testing.T) {
	s := &Source{cache: t.TempDir()}
	if _, err := s.Resolve(context.Background(), nil, "defconfig", Toolchain{}); err == nil || !strings.Contains(err.Error(), `config base "defconfig"`) {
		t.Errorf("err = %v", err)
	}
}

func nil_() *bytes.Buffer { return &bytes.Buffer{} }
