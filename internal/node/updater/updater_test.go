package updater

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/bootstate"
	"github.com/mkimage/mkimage/internal/node/apply"
)

func TestParseMountinfo(t *testing.T) {
	table := `21 26 0:20 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
26 1 254:2 /live/0123456789abcdef / rw,relatime shared:1 - btrfs /dev/vda2 rw,space_cache=v2,subvolid=257,subvol=/live/0123456789abcdef
27 26 254:2 /state/lxc /var/lib/lxc rw,relatime shared:2 - btrfs /dev/vda2 rw,subvol=/state/lxc
`
	for _, tt := range []struct {
		dir, want, err string
	}{
		{"/", "/dev/vda2", ""},
		{"/var/lib/lxc", "/dev/vda2", ""},
		{"/proc", "", "not mounted from a btrfs block device"},
		{"/nowhere", "", "not mounted from a btrfs block device"},
	} {
		got, err := parseMountinfo(strings.NewReader(table), tt.dir)
		if got != tt.want || (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("%s: %q, %v; want %q, %q", tt.dir, got, err, tt.want, tt.err)
		}
	}
}

func writeFile(t *testing.T, p, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

// TestCheck walks the node's side of a try: the checks pass (commit),
// fail (reason recorded, caller reboots), and the boot back on good after
// the tries (the version marked bad with the last reason).
func TestCheck(t *testing.T) {
	const good, next = "1111111111111111", "2222222222222222"
	state := func(s bootstate.State) bootstate.State { return s }
	for _, tt := range []struct {
		name    string
		st      bootstate.State
		running string
		hook    string // "" for no hook
		why     string // an earlier try's recorded reason
		wantErr error
		want    bootstate.State
		bad     string // the .bad record wanted
	}{
		{name: "good, nothing tried", st: state(bootstate.State{Good: good, Try: good}), running: good,
			want: bootstate.State{Good: good, Try: good}},
		{name: "try passes", st: bootstate.State{Good: good, Try: next, Tries: 2}, running: next, hook: "exit 0",
			want: bootstate.State{Good: next, Try: next}},
		{name: "try without hooks passes", st: bootstate.State{Good: good, Try: next, Tries: 0}, running: next,
			want: bootstate.State{Good: next, Try: next}},
		{name: "try fails", st: bootstate.State{Good: good, Try: next, Tries: 1}, running: next, hook: "echo not up; exit 3",
			wantErr: ErrCheckFailed, want: bootstate.State{Good: good, Try: next, Tries: 1}},
		{name: "back on good after the tries", st: bootstate.State{Good: good, Try: next, Tries: 0}, running: good,
			why:  "boot 3 of 3: health check x failed",
			want: bootstate.State{Good: good, Try: good}, bad: "boot 3 of 3: health check x failed"},
		{name: "back on good, no reason recorded (a hang)", st: bootstate.State{Good: good, Try: next, Tries: 0}, running: good,
			want: bootstate.State{Good: good, Try: good}, bad: "it did not pass its checks in 3 boots"},
		{name: "fell back in the same boot (files did not load): tries left", st: bootstate.State{Good: good, Try: next, Tries: 2}, running: good,
			want: bootstate.State{Good: good, Try: next, Tries: 2}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &Card{Root: t.TempDir(), Top: t.TempDir(), Boot: t.TempDir(), Running: tt.running, Log: t.Logf}
			if err := bootstate.Write(c.Boot, tt.st); err != nil {
				t.Fatal(err)
			}
			if tt.hook != "" {
				writeFile(t, filepath.Join(c.Root, HookDirs[0], "50-test"), "#!/bin/sh\n"+tt.hook+"\n", 0o755)
			}
			if tt.why != "" {
				writeFile(t, filepath.Join(c.Top, apply.RecordsDir, next+whySuffix), "boot 1 of 3: x\n"+tt.why+"\n", 0o644)
			}
			_, err := c.Check(context.Background(), CheckOptions{})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Check: %v, want %v", err, tt.wantErr)
			}
			got, err := bootstate.Read(c.Boot)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("state %+v, want %+v", got, tt.want)
			}
			b, _ := os.ReadFile(filepath.Join(c.Top, apply.RecordsDir, next+".bad"))
			if (tt.bad == "") != (len(b) == 0) || !strings.Contains(string(b), tt.bad) {
				t.Errorf(".bad record %q, want %q", b, tt.bad)
			}
			if errors.Is(tt.wantErr, ErrCheckFailed) {
				why, _ := os.ReadFile(filepath.Join(c.Top, apply.RecordsDir, next+whySuffix))
				if !strings.Contains(string(why), "health check 50-test failed: exit status 3 (not up)") {
					t.Errorf("recorded reason %q", why)
				}
			}
		})
	}
}

func TestRegistryLogin(t *testing.T) {
	for _, tt := range []struct {
		name, file, user, secret, err string
	}{
		{"absent: anonymous", "", "", "", ""},
		{"login", "fleet:s3:cret\n", "fleet", "s3:cret", ""},
		{"no newline", "fleet:x", "fleet", "x", ""},
		{"no colon", "fleet\n", "", "", "user:secret"},
		{"two lines", "a:b\nc:d\n", "", "", "user:secret"},
		{"no user", ":x\n", "", "", "user:secret"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &Card{Root: t.TempDir()}
			if tt.file != "" {
				p := filepath.Join(c.Root, RegistryAuthFile)
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, []byte(tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			u, s, err := c.registryLogin("reg.example")
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("error %v, want one saying %q", err, tt.err)
				}
				return
			}
			if err != nil || u != tt.user || s != tt.secret {
				t.Errorf("got %q %q %v, want %q %q", u, s, err, tt.user, tt.secret)
			}
		})
	}
}
