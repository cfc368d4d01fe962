package initramfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestCountCompiles(t *testing.T) {
	for _, tc := range []struct {
		name, log string
		n         int
		note      string
	}{
		{"nothing yet", "", 0, "preparing the busybox source"},
		{"one started", "compile runtime\n", 0, "compiling runtime"},
		{"one done", "compile runtime\ndone compile runtime\n", 1, "compiling runtime"},
		{"in parallel", "compile internal/abi\ncompile runtime\ndone compile internal/abi\ncompile github.com/u-root/u-root/pkg/ls\ndone compile runtime\n", 2, "compiling github.com/u-root/u-root/pkg/ls"},
		{"line still being written", "compile runtime\ndone compile runtime\ndone comp", 1, "compiling runtime"},
		{"link", "compile bb.u-root.com/bb\ndone compile bb.u-root.com/bb\nlink bb.u-root.com/bb\n", 1, "linking"},
		{"linked", "link bb.u-root.com/bb\ndone link bb.u-root.com/bb\n", 0, "linking"},
		{"other lines", "asm runtime\n\ncompile os\ndone compile os\n", 1, "compiling os"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, note := countCompiles([]byte(tc.log))
			if n != tc.n || note != tc.note {
				t.Errorf("countCompiles = %d, %q; want %d, %q", n, note, tc.n, tc.note)
			}
		})
	}
}

// TestToolexec runs the wrapper as go build would: it logs compiles and
// links by import path, not the version queries, and runs the tool with
// its arguments.
func TestToolexec(t *testing.T) {
	dir := t.TempDir()
	// A relative directory (a relative --cache) still gives paths that
	// work from anywhere.
	t.Chdir(filepath.Dir(dir))
	toolexec, log, err := writeToolexec(filepath.Base(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	tools := filepath.Join(dir, "tools")
	if err := os.Mkdir(tools, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"compile", "link", "asm"} {
		if err := os.WriteFile(filepath.Join(tools, tool), []byte("#!/bin/sh\necho "+tool+" \"$@\"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	wrapper := strings.Fields(toolexec)
	var ran []string
	for _, tc := range []struct {
		pkg  string
		args []string
	}{
		{"", []string{"compile", "-V=full"}},
		{"runtime", []string{"compile", "-o", "x.a", "-p", "runtime"}},
		{"runtime", []string{"asm", "-p", "runtime"}},
		{"os", []string{"compile", "-p", "os", "a file.go"}},
		{"", []string{"link", "-V=full"}},
		{"bb.u-root.com/bb", []string{"link", "-o", "bb"}},
	} {
		args := append([]string{strings.Trim(wrapper[1], "'"), filepath.Join(tools, tc.args[0])}, tc.args[1:]...)
		cmd := exec.Command(wrapper[0], args...)
		cmd.Env = append(os.Environ(), "TOOLEXEC_IMPORTPATH="+tc.pkg)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", tc.args, err, out)
		}
		ran = append(ran, strings.TrimSpace(string(out)))
	}
	if got, want := strings.Join(ran, "\n"), "compile -V=full\ncompile -o x.a -p runtime\nasm -p runtime\ncompile -p os a file.go\nlink -V=full\nlink -o bb"; got != want {
		t.Errorf("tools ran:\n%s\nwant:\n%s", got, want)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), "compile runtime\ndone compile runtime\ncompile os\ndone compile os\nlink bb.u-root.com/bb\ndone link bb.u-root.com/bb\n"; got != want {
		t.Errorf("log %q, want %q", got, want)
	}
	if n, _ := countCompiles(b); n != 2 {
		t.Errorf("countCompiles = %d, want 2", n)
	}

	// A failing compile fails the build with the tool's status.
	failing := filepath.Join(dir, "failing")
	if err := os.Mkdir(failing, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(failing, "compile"), []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(wrapper[0], strings.Trim(wrapper[1], "'"), filepath.Join(failing, "compile"), "-p", "broken")
	cmd.Env = append(os.Environ(), "TOOLEXEC_IMPORTPATH=broken")
	if err := cmd.Run(); cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 3 {
		t.Errorf("failing compile: %v, want exit status 3", err)
	}
}
