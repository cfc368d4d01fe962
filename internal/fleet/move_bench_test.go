package fleet

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMoveDowntime moves a running container (the counter of
// TestMoveRunning, with a copy of /usr/lib/python3 in its root for some
// weight) cold with mkimage container move, live where CRIU can, and by
// hand as users would without it (lxc-stop, rsync -aHAX of the stopped
// container to the other node, lxc-start), and prints each one's bytes
// sent while the container was down and its downtime as a client sees
// it: the longest time neither node answered. A measurement, not a
// check: it runs only with MOVE_BENCH=1.
//
//	MOVE_BENCH=1 go test -run MoveDowntime -v ./internal/fleet/
func TestMoveDowntime(t *testing.T) {
	if os.Getenv("MOVE_BENCH") == "" {
		t.Skip("a measurement: set MOVE_BENCH=1 to run it")
	}
	c := newMoveCluster(t)
	runningWeb(t, c, "node01")
	weight := filepath.Join(c.nodes["node01"].root, "var/lib/lxc/c-web/rootfs/usr/lib")
	os.MkdirAll(weight, 0o755)
	if out, err := exec.Command("cp", "-a", "/usr/lib/python3", weight).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	// As on a node, its files are older than the move (the last pass
	// compares by content what changed since the first began).
	time.Sleep(3 * time.Second)
	c.count(t, "node01")

	type row struct {
		how       string
		downBytes int64
		down      time.Duration
		took      time.Duration
		note      string
	}
	var rows []row
	// measure runs f while a client asks both nodes in turn, as one
	// behind the gateway reaches whichever holds the container, and
	// returns the longest time nobody answered, up to the first answer
	// after f.
	measure := func(f func()) (down, took time.Duration) {
		done := make(chan struct{})
		start := time.Now()
		go func() { f(); close(done) }()
		last := time.Now()
		finished := false
		for {
			for _, n := range []string{"node01", "node02"} {
				if c.answers(n) {
					now := time.Now()
					down, last = max(down, now.Sub(last)), now
					if finished {
						return down, now.Sub(start)
					}
				}
			}
			select {
			case <-done:
				finished = true
			default:
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	move := func(how, from, to string, live bool) {
		var r MoveReport
		down, took := measure(func() {
			m := &Move{Baked: c.baked, Container: "c-web", From: from, To: to, Live: live, SSH: []string{"ssh", "-F", c.sshCfg}, Nodeinit: c.wrapper, Log: func(f string, a ...any) { t.Logf(time.Now().Format("15:04:05.000 ")+f, a...) }}
			var err error
			if r, err = m.Run(context.Background()); err != nil {
				t.Error(err)
			}
		})
		rows = append(rows, row{how, r.Last, down, took, r.NotLive})
	}
	move("mkimage container move (cold)", "node01", "node02", false)
	move("mkimage container move --live", "node02", "node01", true)

	var sent int64
	down, took := measure(func() {
		if out, err := c.lxc(c.nodes["node01"], "stop").CombinedOutput(); err != nil {
			t.Errorf("lxc-stop: %v: %s", err, out)
		}
		src := filepath.Join(c.nodes["node01"].root, "var/lib/lxc/c-web")
		dst := filepath.Join(c.nodes["node02"].root, "var/lib/lxc/c-web")
		os.RemoveAll(dst)
		out, err := exec.Command("rsync", "-aHAX", "--numeric-ids", "--stats", "--no-human-readable", src+"/", dst+"/").CombinedOutput()
		if err != nil {
			t.Errorf("rsync: %v: %s", err, out)
		}
		for _, l := range strings.Split(string(out), "\n") {
			fmt.Sscanf(l, "Total bytes sent: %d", &sent)
		}
		if out, err := c.lxc(c.nodes["node02"], "start").CombinedOutput(); err != nil {
			t.Errorf("lxc-start: %v: %s", err, out)
		}
	})
	rows = append(rows, row{"by hand: lxc-stop, rsync -aHAX, lxc-start", sent, down, took, ""})

	fmt.Printf("\n%-44s %14s %12s %12s\n", "container move", "bytes (down)", "downtime", "total")
	for _, r := range rows {
		fmt.Printf("%-44s %14d %12v %12v\n", r.how, r.downBytes, r.down.Round(time.Millisecond), r.took.Round(time.Millisecond))
		if r.note != "" {
			fmt.Printf("  not live: %.400s\n", r.note)
		}
	}
}
