// Package progress shows how far a long build step is toward a known
// total of items and bytes: one line redrawn in place on a terminal
// (an mpb bar), plain lines now and then anywhere else (a log, a pipe,
// a test's buffer), so logs stay readable.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/sys/unix"
)

// IsTerminal tells whether f is a terminal.
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// HasWidth tells whether out is a terminal with a known width: mpb draws
// nothing on a terminal of width 0 (as under script(1) without a tty).
func HasWidth(out io.Writer) bool {
	f, ok := out.(*os.File)
	if !ok {
		return false
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	return err == nil && ws.Col > 0
}

// Counts is how far a step is: items (packages, files) and bytes.
type Counts struct {
	Items int
	Bytes int64
}

// Meter shows a step's progress until Stop.
type Meter struct {
	out      io.Writer
	label    string
	unit     string
	total    Counts
	base     Counts // done when the meter started: not part of the rate
	poll     func() Counts
	every    time.Duration
	start    time.Time
	quit     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// Options describe a step to show.
type Options struct {
	// Label starts each line ("apt: fetching").
	Label string
	// Unit names the items ("packages").
	Unit string
	// Total is what the step ends with.
	Total Counts
	// Poll returns what is done so far, counting what was done before
	// the step started; it is called from the meter's goroutine.
	Poll func() Counts
	// Every is how often a plain line is printed (default 5 s).
	Every time.Duration
}

// Start shows the step on out: a bar when out is a terminal with a
// width, else a plain line every opt.Every. A nil out shows nothing.
func Start(out io.Writer, opt Options) *Meter {
	m := &Meter{
		out: out, label: opt.Label, unit: opt.Unit, total: opt.Total, poll: opt.Poll,
		every: opt.Every, start: time.Now(), quit: make(chan struct{}), done: make(chan struct{}),
	}
	if m.every <= 0 {
		m.every = 5 * time.Second
	}
	m.base = m.poll()
	switch {
	case out == nil:
		close(m.done)
	case HasWidth(out):
		go m.bar()
	default:
		go m.lines()
	}
	return m
}

// Stop ends the display (a bar is left at where the step got) and
// returns what was done.
func (m *Meter) Stop() Counts {
	m.stopOnce.Do(func() { close(m.quit) })
	<-m.done
	return m.poll()
}

// Status is one line of progress: "37/155 packages, 12.3/53.0 MB,
// 5.6 MB/s, 7s left".
func (m *Meter) Status(c Counts) string {
	s := fmt.Sprintf("%d/%d %s, %s/%s MB", c.Items, m.total.Items, m.unit, mb(c.Bytes), mb(m.total.Bytes))
	d := time.Since(m.start).Seconds()
	moved := c.Bytes - m.base.Bytes
	if d < 0.5 || moved <= 0 {
		return s
	}
	rate := float64(moved) / d
	s += fmt.Sprintf(", %s MB/s", mb(int64(rate)))
	if left := m.total.Bytes - c.Bytes; left > 0 {
		s += ", " + time.Duration(float64(left)/rate*float64(time.Second)).Round(time.Second).String() + " left"
	}
	return s
}

func mb(n int64) string { return fmt.Sprintf("%.1f", float64(n)/1e6) }

// bar redraws one line in place with mpb.
func (m *Meter) bar() {
	defer close(m.done)
	p := mpb.New(mpb.WithOutput(m.out), mpb.WithWidth(24), mpb.WithRefreshRate(200*time.Millisecond))
	status := m.Status(m.base)
	var mu sync.Mutex
	full := max(m.total.Bytes, 1)
	b := p.AddBar(full,
		mpb.PrependDecorators(decor.Name(m.label+" ")),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
			mu.Lock()
			defer mu.Unlock()
			return " " + status
		})),
	)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		var quit bool
		select {
		case <-t.C:
		case <-m.quit:
			quit = true
		}
		c := m.poll()
		mu.Lock()
		status = m.Status(c)
		mu.Unlock()
		if !quit {
			b.SetCurrent(min(c.Bytes, full-1)) // complete only at Stop
			continue
		}
		if c.Items >= m.total.Items {
			b.SetCurrent(full)
		} else {
			b.Abort(false)
		}
		p.Wait()
		return
	}
}

// lines prints the status every m.every.
func (m *Meter) lines() {
	defer close(m.done)
	t := time.NewTicker(m.every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			fmt.Fprintf(m.out, "%s: %s\n", m.label, m.Status(m.poll()))
		case <-m.quit:
			return
		}
	}
}
