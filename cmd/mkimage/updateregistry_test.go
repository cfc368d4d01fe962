package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/build/bundle"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/update"
	"github.com/mkimage/mkimage/internal/update/registry/registrytest"
	"github.com/mkimage/mkimage/internal/update/updatetest"
)

// TestUpdatePushPull: mkimage update push then pull through a real
// registry: the second push of the same bundle uploads nothing, and the
// pulled bundle is the pushed one.
func TestUpdatePushPull(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	epoch := time.Unix(1700000000, 0)
	key := updatetest.Key(1)
	dir := t.TempDir()
	pub := filepath.Join(dir, "fleet.key.pub")
	if err := os.WriteFile(pub, []byte(key.Public().String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tr := fstree.New(epoch)
	v := &bundle.Version{Board: "qemu-virt", Cmdline: "console=ttyAMA0", Created: epoch, Kernel: []byte("k"), Initrd: []byte("i"), Root: tr}
	src := filepath.Join(dir, "v1")
	m, err := bundle.Write(src, v, key)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Host() + "/fleet/qemu-virt:v1"
	rc, _, errOut := capture(t, "update", "push", src, ref, "--keys", pub, "--docker-config", filepath.Join(dir, "none.json"))
	if rc == 0 || !strings.Contains(errOut, "none.json") {
		t.Errorf("push with a missing --docker-config: exit %d, %s", rc, errOut)
	}
	rc, out, errOut := capture(t, "update", "push", src, ref, "--keys", pub)
	if rc != 0 || strings.Count(out, " pushed\n") != len(m.Payloads)+2 {
		t.Fatalf("push: exit %d\n%s%s", rc, out, errOut)
	}
	t.Log(out)
	rc, out, errOut = capture(t, "update", "push", src, ref, "--keys", pub)
	if rc != 0 || strings.Contains(out, " pushed\n") || strings.Count(out, "already there") != len(m.Payloads)+2 {
		t.Errorf("push again: exit %d\n%s%s", rc, out, errOut)
	}
	dst := filepath.Join(dir, "pulled")
	rc, out, errOut = capture(t, "update", "pull", ref, dst, "--keys", pub)
	if rc != 0 || !strings.Contains(out, m.ID) {
		t.Fatalf("pull: exit %d\n%s%s", rc, out, errOut)
	}
	for _, name := range []string{update.ManifestFile, update.SignatureFile, update.RootFull, update.BootKernel} {
		a, _ := os.ReadFile(filepath.Join(src, name))
		b, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s: pulled %d bytes (%v), pushed %d", name, len(b), err, len(a))
		}
	}
	if rc, _, errOut = capture(t, "update", "pull", "fleet/qemu-virt:v1", dst, "--keys", pub); rc != 2 || !strings.Contains(errOut, "registry host") {
		t.Errorf("pull of a ref without a host: exit %d, %s", rc, errOut)
	}
}

// fleet rollout takes one destination for the channel: a file or a
// registry tag, named in the refusal.
func TestFleetRolloutChannelFlags(t *testing.T) {
	cfg := filepath.Join("..", "..", "examples", "seed-cluster.toml")
	key := filepath.Join(t.TempDir(), "k")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "give one of --channel-file"},
		{[]string{"--channel-file", "c.json", "--channel-ref", "reg.example/fleet/ch:stable"}, "give one of --channel-file"},
		{[]string{"--channel-ref", "reg.example/Fleet:x:y"}, "--channel-ref"},
		{[]string{"--channel-ref", "oci://reg.example/Fleet:x:y"}, "--channel-ref"},
	} {
		args := append([]string{"fleet", "rollout", "--config", cfg, "--server", "http://127.0.0.1:1", "--key", key, "--version", "v2"}, tc.args...)
		if strings.Contains(strings.Join(tc.args, " "), "Fleet:x:y") {
			if err := os.WriteFile(key, updatetest.Key(1).Marshal(), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		rc, _, errOut := capture(t, args...)
		if rc == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, %q; want %q", tc.args, rc, errOut, tc.want)
		}
	}
}
