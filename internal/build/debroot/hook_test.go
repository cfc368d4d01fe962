package debroot

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHookSyntax: the hook parses with the shell that runs it (dash in
// Debian, sh here).
func TestHookSyntax(t *testing.T) {
	if out, err := exec.Command("sh", "-n", "-c", hookScript).CombinedOutput(); err != nil {
		t.Fatalf("sh -n: %v\n%s", err, out)
	}
}

// TestHookDoneFastPath: once the packages are configured, the hook (a
// container's lxc.hook.start runs it at every start) exits 0 at once,
// printing and writing nothing. The script's state and log are moved
// into a temporary directory; the fast path runs before anything else.
func TestHookDoneFastPath(t *testing.T) {
	dir := t.TempDir()
	state, log := filepath.Join(dir, "state"), filepath.Join(dir, "log")
	s := strings.Replace(hookScript, "state=/var/lib/mkimage/debroot\n", "state="+state+"\n", 1)
	s = strings.Replace(s, "log=/var/log/mkimage-dpkg-configure.log\n", "log="+log+"\n", 1)
	if s == hookScript {
		t.Fatal("the hook's state= or log= line moved; update this test")
	}
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "configured"), []byte("90 90 41\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", s, "50-dpkg-configure", "web", "lxc", "start")
	// No PATH: the fast path must need no program at all.
	cmd.Env = []string{"LXC_NAME=web", "PATH=/nonexistent"}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Fatalf("configured: %v, output %q; want exit 0 and no output", err, out)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
	if _, err := os.Stat(log); err == nil {
		t.Error("the fast path wrote the log")
	}
	if _, err := os.Stat(filepath.Join(state, "preinst-done")); err == nil {
		t.Error("the fast path made state directories")
	}
}
