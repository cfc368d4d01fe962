package firstboot

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/testenv"
)

// hookSrc is a static hook program: it proves it runs chrooted (the fake
// root's os-release, /proc and the fake /sys inside it), counts its runs in
// the root and fails while /etc/fail-<name> exists.
const hookSrc = `package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	name := filepath.Base(os.Args[0])
	osr, _ := os.ReadFile("/etc/os-release")
	_, procErr := os.Stat("/proc/self/stat")
	_, sysErr := os.Stat("/sys/class/net/eth0/address")
	fmt.Printf("os-release=%s proc=%v sys=%v host=%s\n", strings.TrimSpace(string(osr)), procErr == nil, sysErr == nil, os.Getenv("NODEINIT_HOSTNAME"))
	fmt.Fprintf(os.Stderr, "to stderr\n")
	os.MkdirAll("/var/tmp", 0o755)
	f, _ := os.OpenFile("/var/tmp/runs", os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	fmt.Fprintln(f, name)
	f.Close()
	if _, err := os.Stat("/etc/fail-" + name); err == nil {
		os.Exit(3)
	}
}
`

func buildHook(t *testing.T) []byte {
	t.Helper()
	testenv.NeedTools(t, "go")
	d := t.TempDir()
	src := filepath.Join(d, "hook.go")
	if err := os.WriteFile(src, []byte(hookSrc), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", filepath.Join(d, "hook"), src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build hook: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(d, "hook"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHooks(t *testing.T) {
	testenv.NeedRoot(t)
	bin := buildHook(t)
	env, log := fakeNode(t, "00:1e:06:42:01:01")
	env.Proc, env.Run = "/proc", t.TempDir()
	dir := filepath.Join(env.Root, HooksDir)
	os.MkdirAll(dir, 0o755)
	for name, perm := range map[string]os.FileMode{"10-first": 0o755, "20-second": 0o755, "30-not-executable": 0o644, ".hidden": 0o755} {
		if err := os.WriteFile(filepath.Join(dir, name), bin, perm); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(env.Root, "etc/fail-20-second"), nil, 0o644)
	runs := func() string {
		return strings.Join(strings.Fields(read(t, filepath.Join(env.Root, "var/tmp/runs"))), " ")
	}
	mounted := func() bool {
		mi, _ := os.ReadFile("/proc/self/mountinfo")
		return strings.Contains(string(mi), env.Root)
	}

	tests := []struct {
		name    string
		prepare func()
		err     string // "" for success
		ran     string // hooks in Result.Ran
		runs    string // every hook run so far
		logs    []string
	}{
		{"second fails", func() {}, "hook 20-second: exit status 3", "hook:10-first", "10-first 20-second", []string{
			"nodeinit: hook 10-first: os-release=ID=test proc=true sys=true host=node01",
			"nodeinit: hook 10-first: to stderr",
			"nodeinit: firstboot: hook 10-first done",
			"nodeinit: firstboot: hook 20-second: exit status 3; it and the hooks after it run again at the next boot",
		}},
		{"retried", func() { os.Remove(filepath.Join(env.Root, "etc/fail-20-second")) }, "", "hook:20-second", "10-first 20-second 20-second", []string{
			"nodeinit: firstboot: already done: machine-id, ssh-host-keys, hostname, hosts, network, authorized-keys, timezone, disk-id, grow-partition, grow-filesystem, subvolumes, hook:10-first",
			"nodeinit: firstboot: hook 20-second done",
		}},
		{"all done", func() {}, "", "", "10-first 20-second 20-second", []string{
			"already done: machine-id, ssh-host-keys, hostname, hosts, network, authorized-keys, timezone, disk-id, grow-partition, grow-filesystem, subvolumes, hook:10-first, hook:20-second",
		}},
	}
	for _, tt := range tests {
		tt.prepare()
		log.lines = nil
		res, err := Run(context.Background(), env)
		if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Fatalf("%s: err %v, want %q\nlog:\n%s", tt.name, err, tt.err, log)
		}
		var hooks []string
		for _, s := range res.Ran {
			if strings.HasPrefix(s, hookPrefix) {
				hooks = append(hooks, s)
			}
		}
		if got := strings.Join(hooks, " "); got != tt.ran {
			t.Errorf("%s: ran %q, want %q", tt.name, got, tt.ran)
		}
		if got := runs(); got != tt.runs {
			t.Errorf("%s: runs %q, want %q", tt.name, got, tt.runs)
		}
		for _, want := range tt.logs {
			if !strings.Contains(log.String(), want) {
				t.Errorf("%s: log lacks %q:\n%s", tt.name, want, log)
			}
		}
		if mounted() {
			t.Errorf("%s: kernel filesystems still mounted in %s", tt.name, env.Root)
		}
	}
}
