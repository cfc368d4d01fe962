package ocirootfs

import (
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/cluster/plan"
	"github.com/mkimage/mkimage/internal/fstree"
)

func TestInitCmd(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		want string // "" for an error
	}{
		{[]string{"/bin/app"}, "/bin/app"},
		{[]string{"/bin/sh", "-c", "echo hi; sleep 1"}, "/bin/sh -c 'echo hi; sleep 1'"},
		{[]string{"x", ""}, "x ''"},
		{[]string{"it's", "say 'hi'"}, `it's "say 'hi'"`},
		{[]string{"'quoted"}, `"'quoted"`},
		{[]string{`both ' and "`}, ""},
	} {
		got, err := initCmd(tc.argv)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%q: %q, want an error", tc.argv, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %q, %v; want %q", tc.argv, got, err, tc.want)
		}
	}
}

func TestLXCConfigRefuses(t *testing.T) {
	root := fstree.New(time.Unix(0, 0))
	for _, tc := range []struct {
		name string
		set  func(c *ImageConfig)
		want string
	}{
		{"no command", func(c *ImageConfig) { c.Config.Entrypoint, c.Config.Cmd = nil, nil }, "no Entrypoint or Cmd"},
		{"newline", func(c *ImageConfig) { c.Config.Cmd = []string{"a\nlxc.apparmor.profile = unconfined"} }, "line break"},
		{"env newline", func(c *ImageConfig) { c.Config.Env = []string{"A=1\nlxc.apparmor.profile=unconfined"} }, "line break"},
		{"env blank", func(c *ImageConfig) { c.Config.Env = []string{"A=1 "} }, "surrounding blanks"},
		{"relative cwd", func(c *ImageConfig) { c.Config.WorkingDir = "srv" }, "absolute"},
		{"unknown user", func(c *ImageConfig) { c.Config.User = "nobody" }, `"nobody" is not in the image's /etc/passwd`},
	} {
		img := &Image{}
		img.Config.Config.Cmd = []string{"/bin/app"}
		tc.set(&img.Config)
		if _, err := LXCConfig("c", "oci:x", img, root); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	img := &Image{}
	img.Config.Config.Cmd = []string{"/bin/app"}
	img.Config.Config.User = "7:8"
	b, err := LXCConfig("c", "oci:x", img, root)
	if err != nil || !strings.Contains(string(b), "lxc.init.uid = 7\nlxc.init.gid = 8\n") {
		t.Errorf("numeric user: %v\n%s", err, b)
	}
}

// TestContainerConfig: the lines every placed container has, whatever
// its root is made from, around the caller's; no value may break a line.
func TestContainerConfig(t *testing.T) {
	b, err := ContainerConfig("web", "debian:bookworm (3 packages)", []Line{{"lxc.init.cmd", "/sbin/init"}})
	if err != nil {
		t.Fatal(err)
	}
	want := plan.AutostartMarker + "\n" +
		"# container web from debian:bookworm (3 packages)\n" +
		"lxc.include = /usr/share/lxc/config/common.conf\n" +
		"lxc.apparmor.profile = generated\n" +
		"lxc.uts.name = web\n" +
		"lxc.rootfs.path = dir:/var/lib/lxc/web/rootfs\n" +
		"lxc.init.cmd = /sbin/init\n" +
		"lxc.start.auto = 0\n"
	if string(b) != want {
		t.Errorf("config:\n%s\nwant:\n%s", b, want)
	}
	if _, err := ContainerConfig("web", "x", []Line{{"lxc.hook.start", "/a\nlxc.apparmor.profile = unconfined"}}); err == nil || !strings.Contains(err.Error(), "line break") {
		t.Errorf("line break in a value: %v", err)
	}
	if _, err := ContainerConfig("web", "x\nlxc.apparmor.profile = unconfined", nil); err == nil || !strings.Contains(err.Error(), "line break") {
		t.Errorf("line break in the comment: %v", err)
	}
}
