// Package kbuildtest gives tests a real arm64 kernel for the qemu-virt
// board, built from Debian's linux-source-6.1 with the board's fragments.
// The first run builds it (minutes); later runs, in any package, copy it
// from the kernel cache (${XDG_CACHE_HOME:-~/.cache}/mkimage/kernel/out).
package kbuildtest

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/cachedir"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/internal/build/kbuild"
	"github.com/mkimage/mkimage/internal/testenv"
	kernelconfig "github.com/mkimage/mkimage/kernel-configs"
)

// Source is Debian's kernel source tarball (package linux-source-6.1).
const Source = "/usr/src/linux-source-6.1.tar.xz"

// QemuVirtKernel returns a fresh directory holding the qemu-virt kernel in
// the layout the image builder's --kernel DIR takes (Image,
// lib/modules/<release>/, config, System.map, release). It skips under
// -short, and skips (fails under CI) without the source or the tools.
func QemuVirtKernel(t testing.TB) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "kernel")
	Build(t, "qemu-virt", out)
	return out
}

// Build builds board's kernel from Source into out and returns the result.
func Build(t testing.TB, board, out string) *kbuild.Result {
	t.Helper()
	testenv.Short(t)
	testenv.NeedFile(t, Source)
	testenv.NeedTools(t, "make", "tar", "xz", "gcc", "flex", "bison", "bc", kbuild.CrossPrefix+"gcc")
	b, err := boards.Get(board)
	if err != nil {
		t.Fatal(err)
	}
	cache := cachedir.Dir("kernel")
	logw := logWriter{t}
	src, err := kbuild.OpenSource(Source, cache, logw)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := kbuild.DetectToolchain("auto")
	if err != nil {
		t.Fatal(err)
	}
	m, err := kernelconfig.ForBoardMerged(b)
	if err != nil {
		t.Fatal(err)
	}
	res, err := kernelconfig.Resolve(context.Background(), m, src, "allnoconfig", tc)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range res.Fatal() {
		t.Errorf("lost: %s", l)
	}
	if t.Failed() {
		t.FailNow()
	}
	opts := kbuild.BuildOptions{Config: res.Config, Toolchain: tc, Progress: logw}
	if b.DTB != "" {
		opts.DTBs = []string{b.DTB}
	}
	r, err := src.Build(context.Background(), out, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
