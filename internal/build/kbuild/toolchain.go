package kbuild

import (
	"fmt"
	"os/exec"
	"strings"
)

// Toolchain is how make is told to cross-compile for arm64.
type Toolchain struct {
	MakeVars []string // e.g. CROSS_COMPILE=aarch64-linux-gnu-
	Version  string   // the compiler's --version first line, part of cache keys
}

// CrossPrefix is Debian's arm64 cross compiler prefix
// (gcc-aarch64-linux-gnu).
const CrossPrefix = "aarch64-linux-gnu-"

// Toolchains lists what DetectToolchain accepts.
var Toolchains = []string{"auto", "gnu", "llvm"}

// DetectToolchain finds the arm64 cross toolchain: "gnu" is Debian's
// gcc-aarch64-linux-gnu (CROSS_COMPILE=aarch64-linux-gnu-), "llvm" is
// clang with ld.lld (LLVM=1), "auto" (or "") takes gnu if installed, else
// llvm. The Kconfig of 5.x+ asks the compiler what it supports, so the
// same toolchain must resolve the config and build it.
func DetectToolchain(which string) (Toolchain, error) {
	gnu := func() (Toolchain, error) {
		if _, err := exec.LookPath(CrossPrefix + "gcc"); err != nil {
			return Toolchain{}, fmt.Errorf("no %sgcc on PATH: install gcc-aarch64-linux-gnu", CrossPrefix)
		}
		return toolchain(CrossPrefix+"gcc", "CROSS_COMPILE="+CrossPrefix)
	}
	llvm := func() (Toolchain, error) {
		_, e1 := exec.LookPath("clang")
		_, e2 := exec.LookPath("ld.lld")
		if e1 != nil || e2 != nil {
			return Toolchain{}, fmt.Errorf("no clang and ld.lld on PATH: install clang and lld")
		}
		return toolchain("clang", "LLVM=1")
	}
	switch which {
	case "gnu":
		return gnu()
	case "llvm":
		return llvm()
	case "", "auto":
		if tc, err := gnu(); err == nil {
			return tc, nil
		}
		if tc, err := llvm(); err == nil {
			return tc, nil
		}
		return Toolchain{}, fmt.Errorf("no arm64 cross compiler: install gcc-aarch64-linux-gnu (or clang and lld)")
	}
	return Toolchain{}, fmt.Errorf("toolchain %q: want auto, gnu or llvm", which)
}

func toolchain(cc string, vars ...string) (Toolchain, error) {
	out, err := exec.Command(cc, "--version").Output()
	if err != nil {
		return Toolchain{}, fmt.Errorf("%s --version: %w", cc, err)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return Toolchain{MakeVars: vars, Version: strings.TrimSpace(first)}, nil
}
