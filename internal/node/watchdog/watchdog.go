// Package watchdog arms the board's hardware watchdog for nodeinit, keeps
// it fed while nodeinit's steps run, and hands it on, still armed, to the
// root's init at switch_root (lines "nodeinit: watchdog: ...").
//
// It runs only when asked (nodeinit.watchdog=SECONDS, which the builder
// puts on an updatable image's command line when its root feeds the
// watchdog): a version whose kernel or root then hangs without feeding it
// is reset, so U-Boot's counting boot script uses up its tries and falls
// back to the good version, as it does for a panic (panic=10).
//
// The hand-over closes the device without the magic 'V', which leaves it
// running (the kernel says "watchdog did not stop!"): the root's init
// (busybox watchdog, systemd's RuntimeWatchdogSec) opens it again and
// feeds it from there.
package watchdog

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Devices are the nodes tried, in order: watchdog0 is the first
// registered device; watchdog is its legacy name.
var Devices = []string{"/dev/watchdog0", "/dev/watchdog"}

// maxTimeout bounds nodeinit.watchdog: the ioctl takes an int of seconds
// and no board's timer reaches further (the i6300esb stops at 2046 s).
const maxTimeout = time.Hour

// device is what Dog needs of the watchdog device (tests fake it).
type device interface {
	keepalive() error
	close() error // without the magic 'V': the watchdog stays armed
}

// Dog is an armed watchdog that nodeinit feeds until HandOver. A nil Dog
// (no watchdog asked for, or none found) does nothing.
type Dog struct {
	name    string // device node and driver identity, for the log
	timeout time.Duration
	dev     device
	say     func(string, ...any)

	once sync.Once
	stop chan struct{} // closed by HandOver: feeding stops
	done chan struct{} // closed when feeding has stopped
}

// Arm opens the first of devs (Devices on the node) that exists, sets
// its timeout and feeds it every third of that until HandOver. It
// returns nil, having said why, when timeout is 0 (not asked), when no
// device exists (a board without a watchdog, or its driver did not
// load) or when the device refuses; the boot goes on without it.
func Arm(devs []string, timeout time.Duration, say func(string, ...any)) *Dog {
	if timeout <= 0 {
		return nil
	}
	if timeout > maxTimeout {
		say("watchdog: timeout %v is more than %v: not armed", timeout, maxTimeout)
		return nil
	}
	for _, p := range devs {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		d, err := open(p, timeout)
		if err != nil {
			say("watchdog: %v: going on without a watchdog", err)
			return nil
		}
		got, name := d.timeout, d.name
		dog := start(name, got, d, say)
		say("watchdog: %s armed, timeout %v, fed every %v until switch_root", name, got, feedEvery(got))
		return dog
	}
	say("watchdog: no watchdog device (%s; a board without one, or its driver did not load): going on without", strings.Join(devs, ", "))
	return nil
}

// wdFile is a watchdog device node.
type wdFile struct {
	f       *os.File
	name    string
	timeout time.Duration // as the driver set it
}

// open opens the node and sets the timeout; the driver may round it
// (its timer's steps), so the timeout it reports back is the one used.
func open(p string, timeout time.Duration) (*wdFile, error) {
	// Opening starts the watchdog with the driver's default timeout.
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", p, err)
	}
	fd := int(f.Fd())
	name := p
	if info, err := unix.IoctlGetWatchdogInfo(fd); err == nil {
		if id := unix.ByteSliceToString(info.Identity[:]); id != "" {
			name = fmt.Sprintf("%s (%s)", p, id)
		}
	}
	secs := int((timeout + time.Second - 1) / time.Second)
	if err := unix.IoctlSetPointerInt(fd, unix.WDIOC_SETTIMEOUT, secs); err != nil {
		// Opening started it with the driver's default timeout, which
		// nobody asked for: stop it again.
		disarm(f)
		return nil, fmt.Errorf("%s: setting the timeout to %d s: %w", name, secs, err)
	}
	got := time.Duration(secs) * time.Second
	if n, err := unix.IoctlGetInt(fd, unix.WDIOC_GETTIMEOUT); err == nil && n > 0 {
		got = time.Duration(n) * time.Second
	}
	if err := unix.IoctlWatchdogKeepalive(fd); err != nil {
		disarm(f)
		return nil, fmt.Errorf("%s: keepalive: %w", name, err)
	}
	return &wdFile{f: f, name: name, timeout: got}, nil
}

// disarm closes f after a failure: the device may already be running
// with the driver's default timeout, and nothing will feed it now; the
// magic 'V' before the close stops it where the driver allows (nowayout
// is off in Debian's kernel), so a failed arm does not reset the board.
func disarm(f *os.File) {
	f.Write([]byte("V"))
	f.Close()
}

func (w *wdFile) keepalive() error { return unix.IoctlWatchdogKeepalive(int(w.f.Fd())) }
func (w *wdFile) close() error     { return w.f.Close() }

// feedEvery is the feeding period: a third of the timeout, so one late
// tick (a busy emulated CPU) does not reset the board.
func feedEvery(timeout time.Duration) time.Duration {
	return max(timeout/3, 100*time.Millisecond)
}

func start(name string, timeout time.Duration, dev device, say func(string, ...any)) *Dog {
	d := &Dog{name: name, timeout: timeout, dev: dev, say: say, stop: make(chan struct{}), done: make(chan struct{})}
	go d.feed(feedEvery(timeout))
	return d
}

// feed keeps the watchdog fed until stop closes. A failing keepalive is
// said once: the board may then reset, which is what the watchdog is for.
func (d *Dog) feed(every time.Duration) {
	defer close(d.done)
	t := time.NewTicker(every)
	defer t.Stop()
	failed := false
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
		}
		if err := d.dev.keepalive(); err != nil && !failed {
			d.say("watchdog: %s: keepalive: %v", d.name, err)
			failed = true
		}
	}
}

// HandOver stops feeding, feeds once more (the next one to feed gets a
// whole timeout) and closes the device without the magic 'V', so it
// stays armed: to says who must feed it from now on (the root's init,
// or nobody in the rescue shell, so a version that does not come up
// resets and falls back). It is safe on a nil Dog and repeated.
func (d *Dog) HandOver(to string) {
	if d == nil {
		return
	}
	d.once.Do(func() { d.handOver(to) })
}

func (d *Dog) handOver(to string) {
	close(d.stop)
	<-d.done
	if err := d.dev.keepalive(); err != nil {
		d.say("watchdog: %s: last keepalive: %v", d.name, err)
	}
	if err := d.dev.close(); err != nil {
		d.say("watchdog: %s: close: %v", d.name, err)
	}
	d.say("watchdog: handed over to %s, still armed: the board resets %v from now unless it is fed", to, d.timeout)
}
