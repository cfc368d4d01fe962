package qemu

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestArgs(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want []string
		not  []string
	}{
		{"bios", Options{Disk: "d.img", MAC: "52:54:00:00:00:01"},
			[]string{"-bios " + UBoot, "-M virt", "-cpu cortex-a53", "-m 1024", "-drive if=none,file=d.img,format=raw,id=hd0", "-device virtio-blk-device,drive=hd0", "-device virtio-net-device,netdev=n0,mac=52:54:00:00:00:01"},
			[]string{"-kernel"}},
		{"kernel", Options{Kernel: "Image", Initrd: "i.xz", Append: "console=ttyAMA0", MemoryMiB: 512, CPU: "max"},
			[]string{"-kernel Image", "-initrd i.xz", "-append console=ttyAMA0", "-m 512", "-cpu max"},
			[]string{"-bios", "-drive"}},
		{"dtb", Options{Disk: "d.img", DTB: "board.dtb"},
			[]string{"-bios " + UBoot, "-dtb board.dtb"},
			[]string{"-kernel", "-device i6300esb"}},
		{"watchdog", Options{Disk: "d.img", Watchdog: true},
			[]string{"-no-reboot", "-device i6300esb", "-action watchdog=reset"},
			nil},
	}
	for _, tt := range tests {
		got := " " + strings.Join(tt.o.Args(), " ") + " "
		for _, w := range tt.want {
			if !strings.Contains(got, " "+w+" ") {
				t.Errorf("%s: args lack %q: %s", tt.name, w, got)
			}
		}
		for _, w := range tt.not {
			if strings.Contains(got, " "+w+" ") {
				t.Errorf("%s: args have %q: %s", tt.name, w, got)
			}
		}
	}
}

func TestForVirt(t *testing.T) {
	tests := []struct{ in, want string }{
		{"console=ttyAML0,115200 root=LABEL=root rootwait", "console=ttyAMA0 root=LABEL=root rootwait"},
		{"root=LABEL=root console=ttyS0,115200", "console=ttyAMA0 root=LABEL=root"},
		{"", "console=ttyAMA0 "},
	}
	for _, tt := range tests {
		if got := ForVirt(tt.in); got != tt.want {
			t.Errorf("ForVirt(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestExpect(t *testing.T) {
	ctx := context.Background()
	c := newConsole(nil)
	c.Write([]byte("U-Boot\r\nnodeinit: root LABEL=root is /dev/vda2\r\nnodeinit: mounted"))
	line, err := c.Expect(ctx, "is /dev/")
	if err != nil || line != "nodeinit: root LABEL=root is /dev/vda2" {
		t.Fatalf("Expect = %q, %v", line, err)
	}
	// Waits for the line to complete, then for later text.
	done := make(chan string)
	go func() {
		l, err := c.Expect(ctx, "mounted")
		if err != nil {
			t.Error(err)
		}
		done <- l
	}()
	time.Sleep(20 * time.Millisecond)
	c.Write([]byte(" /dev/vda2 on /newroot\n"))
	if l := <-done; l != "nodeinit: mounted /dev/vda2 on /newroot" {
		t.Errorf("second Expect = %q", l)
	}
	// The earlier match is not found again.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := c.Expect(short, "is /dev/"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("old text matched again: %v", err)
	}
	c.Write([]byte("[ 3.1] Kernel panic - not syncing: VFS\n"))
	_, err = c.Expect(ctx, "never")
	var te *TailError
	if !errors.Is(err, ErrPanic) || !errors.As(err, &te) || !strings.Contains(te.Tail[len(te.Tail)-1], "Kernel panic") {
		t.Errorf("panic: %v", err)
	}
	c2 := newConsole(nil)
	c2.Write([]byte("bye\n"))
	c2.close(nil)
	if _, err := c2.Expect(ctx, "never"); !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "bye") {
		t.Errorf("exit: %v", err)
	}
}

func TestCopyImage(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.img")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(64 << 20)
	f.WriteAt([]byte("MBR"), 0)
	f.WriteAt(bytes.Repeat([]byte{7}, 1<<20), 32<<20)
	f.Close()
	dst := filepath.Join(dir, "dst.img")
	if err := CopyImage(src, dst, 128<<20); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(src)
	if len(got) != 128<<20 || !bytes.Equal(got[:64<<20], want) || bytes.Count(got[64<<20:], []byte{0}) != 64<<20 {
		t.Fatalf("copy differs (len %d)", len(got))
	}
	var st unix.Stat_t
	unix.Stat(dst, &st)
	if st.Blocks*512 > 8<<20 {
		t.Errorf("copy uses %d bytes on disk: holes were filled", st.Blocks*512)
	}
	if err := CopyImage(src, dst, 1<<20); err == nil || !strings.Contains(err.Error(), "smaller") {
		t.Errorf("shrinking: err = %v", err)
	}
	if err := CopyImage(filepath.Join(dir, "none.img"), dst, 0); err == nil {
		t.Error("missing source gave no error")
	}
}

// A prompt never ends its line: it matches once the console stays quiet.
func TestExpectPrompt(t *testing.T) {
	c := newConsole(nil)
	c.Write([]byte("Debian GNU/Linux 12 node ttyAMA0\r\n\r\nnode login: "))
	start := time.Now()
	line, err := c.Expect(context.Background(), "login:")
	if err != nil || line != "node login: " {
		t.Fatalf("Expect = %q, %v", line, err)
	}
	if waited := time.Since(start); waited < promptQuiet {
		t.Errorf("matched an unfinished line after %v, before the quiet time", waited)
	}
}

// TestWatchdogEvent: a QMP WATCHDOG event (what QEMU sends when the
// i6300esb fires) is seen after capabilities are negotiated and becomes
// ErrWatchdog.
func TestWatchdogEvent(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.Write([]byte(`{"QMP": {"version": {}, "capabilities": []}}` + "\n"))
		line, _ := bufio.NewReader(conn).ReadString('\n')
		if !strings.Contains(line, "qmp_capabilities") {
			return
		}
		conn.Write([]byte(`{"return": {}}` + "\n" +
			`{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "WATCHDOG", "data": {"action": "reset"}}` + "\n" +
			`{"timestamp": {"seconds": 1, "microseconds": 3}, "event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-reset"}}` + "\n"))
	}()
	stop := make(chan struct{})
	defer close(stop)
	ev := watchEvents(sock, stop)
	if got := ev.fired(5 * time.Second); got != "reset" {
		t.Fatalf("fired = %q, want reset", got)
	}
	err = watchdogError("reset")
	if !errors.Is(err, ErrWatchdog) || !strings.Contains(err.Error(), "-no-reboot") {
		t.Errorf("watchdogError: %v", err)
	}
}
