package backup

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/testenv"
)

// TestExportVsRsync compares a full and an incremental export with rsync
// -a of the same trees over the same sshd, and prints a table. The tree
// is a root-like copy of /etc and /usr/lib/python3; the change between
// the two snapshots is one edited file and one new one. It is a
// measurement, not a check: it runs only with BACKUP_BENCH=1.
//
//	BACKUP_BENCH=1 go test -run ExportVsRsync -v ./internal/node/backup/
func TestExportVsRsync(t *testing.T) {
	if os.Getenv("BACKUP_BENCH") == "" {
		t.Skip("a measurement: set BACKUP_BENCH=1 to run it")
	}
	needEnv(t)
	if _, err := exec.LookPath("rsync"); err != nil {
		t.Skip("rsync not installed")
	}
	srv := startSSHD(t)
	nodeFS := testenv.ScratchBtrfs(t)
	targetFS := testenv.ScratchBtrfs(t)
	fileDir := filepath.Join(t.TempDir(), "files")
	for _, d := range []string{fileDir, filepath.Join(targetFS, "btrfs"), filepath.Join(targetFS, "rsync")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	nd := &node{t: t, root: filepath.Join(nodeFS, "root"), snap: filepath.Join(nodeFS, "snaps"), prefix: "root"}
	if err := os.Mkdir(nd.snap, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("btrfs", "subvolume", "create", nd.root).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, src := range []string{"/etc", "/usr/lib/python3"} {
		dst := filepath.Join(nd.root, filepath.Dir(src))
		os.MkdirAll(dst, 0o755)
		if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
			t.Fatalf("cp -a %s: %v: %s", src, err, out)
		}
	}
	type row struct {
		what  string
		bytes int64
		took  time.Duration
	}
	var rows []row
	targets := []struct{ name, dir string }{
		{"export, btrfs target", filepath.Join(targetFS, "btrfs")},
		{"export, file target", fileDir},
	}
	tg := srv.target(filepath.Join(targetFS, "rsync"))
	ssh := strings.Join(tg.sshArgs("")[:len(tg.sshArgs(""))-3], " ")
	sent := regexp.MustCompile(`Total bytes sent: ([0-9,]+)`)
	round := func(snap, label string) {
		for _, k := range targets {
			start := time.Now()
			sum, err := Export(context.Background(), Options{SnapshotDir: nd.snap, Prefix: nd.prefix, Target: srv.target(k.dir)})
			if err != nil {
				t.Fatal(err)
			}
			if len(sum.Sent) != 1 {
				t.Fatalf("sent %+v", sum.Sent)
			}
			rows = append(rows, row{k.name + ", " + sum.Sent[0].Mode() + " (stream " + strconv.FormatInt(sum.Sent[0].Bytes, 10) + ")", sum.Sent[0].Stored, time.Since(start)})
		}
		start := time.Now()
		out, err := exec.Command("rsync", "-a", "--delete", "--stats", "-e", ssh,
			filepath.Join(nd.snap, snap)+"/", tg.Host+":"+tg.Dir+"/tree/").CombinedOutput()
		if err != nil {
			t.Fatalf("rsync: %v: %s", err, out)
		}
		m := sent.FindSubmatch(out)
		if m == nil {
			t.Fatalf("rsync --stats: no bytes sent in %s", out)
		}
		n, _ := strconv.ParseInt(strings.ReplaceAll(string(m[1]), ",", ""), 10, 64)
		rows = append(rows, row{"rsync -a, " + label, n, time.Since(start)})
	}
	// rsync reads the snapshots, as the exports do: reading the live
	// root would move its atimes into the next snapshot.
	round(nd.snapshot(), "first copy")
	f, err := os.OpenFile(filepath.Join(nd.root, "etc/hostname"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("changed\n")
	f.Close()
	nd.write("etc/new-file", []byte("a small new file\n"))
	round(nd.snapshot(), "after the change")
	var b strings.Builder
	b.WriteString("\n| transfer | bytes sent (stored) | time |\n|---|---:|---:|\n")
	for _, r := range rows {
		b.WriteString("| " + r.what + " | " + strconv.FormatInt(r.bytes, 10) + " | " + r.took.Round(time.Millisecond).String() + " |\n")
	}
	t.Log(b.String())
}
