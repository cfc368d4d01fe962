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

// DetectToolchain picks the GNU cross compiler, or LLVM (clang and
// ld.lld, LLVM=1) where no GNU one is installed. The Kconfig of 5.x+ asks
// the compiler what it supports, so the same toolchain must resolve the
// config and build it.
func DetectToolchain() (Toolchain, error) {
	if _, err := exec.LookPath(CrossPrefix + "gcc"); err == nil {
		return toolchain(CrossPrefix+"gcc", "CROSS_COMPILE="+CrossPrefix)
	}
	_, e1 := exec.LookPath("clang")
	_, e2 := exec.LookPath("ld.lld")
	if e1 == nil && e2 == nil {
		return toolchain("clang", "LLVM=1")
	}
	return Toolchain{}, fmt.Errorf("no arm64 cross compiler: install gcc-aarch64-linux-gnu (or clang and lld)")
}

func toolchain(cc string, vars ...string) (Toolchain, error) {
	out, err := exec.Command(cc, "--version").Output()
	if err != nil {
		return Toolchain{}, fmt.Errorf("%s --version: %w", cc, err)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return Toolchain{MakeVars: vars, Version: strings.TrimSpace(first)}, nil
}
