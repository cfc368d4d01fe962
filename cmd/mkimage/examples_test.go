package main

import (
	"io"
	"os"
	"strings"
	"testing"
)

// TestExamples: every command's --help ends with examples, and every flag
// an example uses is one the command has (examples stay real as flags
// change).
func TestExamples(t *testing.T) {
	// Each command and each subcommand with examples ("update push").
	names := commandNames()
	for name := range examples {
		if strings.Contains(name, " ") {
			names = append(names, name)
		}
	}
	for _, name := range names {
		help := helpText(t, name)
		if !strings.Contains(help, "\nExamples:\n") {
			t.Errorf("mkimage %s --help has no examples", name)
			continue
		}
		for _, line := range strings.Split(examples[name], "\n") {
			// Only the part for this command: "a && mkimage qemu t.img"
			// runs another.
			line, _, _ = strings.Cut(line, "&&")
			for _, w := range strings.Fields(line) {
				if !strings.HasPrefix(w, "--") {
					continue
				}
				flag, _, _ := strings.Cut(w, "=")
				if !strings.Contains(help, flag+" ") && !strings.Contains(help, flag+"[") {
					t.Errorf("mkimage %s: example uses %s, which --help does not list:\n%s", name, flag, line)
				}
			}
		}
	}
}

// helpText runs mkimage NAME --help and returns what it printed.
func helpText(t *testing.T, name string) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = w
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	cmd, sub, _ := strings.Cut(name, " ")
	args := []string{"--help"}
	if sub != "" {
		args = []string{sub, "--help"}
	}
	commands[cmd].run(args)
	os.Stderr = stderr
	w.Close()
	return <-done
}
