// Package progress shows how far a long build step is toward a known
// total of items and bytes: one line redrawn in place on a terminal
// (an mpb bar), plain lines now and then anywhere else (a log, a pipe,
// a test's buffer), so logs stay readable.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
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

// Report is a step's state as its Watch function sees it.
type Report struct {
	Done Counts
	// Total, when not zero, replaces Options.Total: some steps learn
	// theirs on the way (a writer once it has planned, dpkg once it
	// says how many packages it will configure).
	Total Counts
	// Note says what the step is doing now ("compiling net/http").
	Note string
}

// Meter shows a step's progress until Stop.
type Meter struct {
	out      io.Writer
	label    string
	unit     string
	total    Counts
	base     Counts // done when the meter started: not part of the rate
	watch    func() Report
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
	// Watch, used instead of Poll when set, also reports the total
	// once known and what the step is doing. Without either, the meter
	// shows the time the step has taken.
	Watch func() Report
	// Every is how often a plain line is printed (default 5 s).
	Every time.Duration
}

// Start shows the step on out: a bar when out is a terminal with a
// width, else a plain line every opt.Every. A nil out (or io.Discard,
// as with -q) shows nothing.
func Start(out io.Writer, opt Options) *Meter {
	m := &Meter{
		out: out, label: opt.Label, unit: opt.Unit, total: opt.Total, watch: opt.Watch,
		every: opt.Every, start: time.Now(), quit: make(chan struct{}), done: make(chan struct{}),
	}
	switch {
	case m.watch != nil:
	case opt.Poll != nil:
		m.watch = func() Report { return Report{Done: opt.Poll()} }
	default:
		// Nothing to count: the time taken alone.
		m.watch = func() Report { return Report{} }
	}
	if m.every <= 0 {
		m.every = 5 * time.Second
	}
	m.base = m.watch().Done
	switch {
	case out == nil || out == io.Discard:
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
	return m.watch().Done
}

// poll returns the step's state with its total filled in.
func (m *Meter) poll() Report {
	r := m.watch()
	if r.Total == (Counts{}) {
		r.Total = m.total
	}
	return r
}

// Status is one line of progress: "37/155 packages, 12.3/53.0 MB,
// 5.6 MB/s, 7s left". A step without a byte total ("312 packages to
// compile") shows the time it has taken instead of a rate: "37/312
// packages, 1m5s"; one without an item total shows only bytes.
func (m *Meter) Status(c Counts) string {
	return m.status(Report{Done: c, Total: m.total})
}

func (m *Meter) status(r Report) string {
	c, total := r.Done, r.Total
	var parts []string
	switch {
	case total.Items > 0:
		parts = append(parts, fmt.Sprintf("%d/%d %s", c.Items, total.Items, m.unit))
	case c.Items > 0:
		parts = append(parts, fmt.Sprintf("%d %s", c.Items, m.unit))
	}
	d := time.Since(m.start)
	if total.Bytes > 0 {
		parts = append(parts, fmt.Sprintf("%s/%s MB", mb(c.Bytes), mb(total.Bytes)))
		if moved := c.Bytes - m.base.Bytes; d >= 500*time.Millisecond && moved > 0 {
			rate := float64(moved) / d.Seconds()
			parts = append(parts, fmt.Sprintf("%s MB/s", mb(int64(rate))))
			if left := total.Bytes - c.Bytes; left > 0 {
				parts = append(parts, time.Duration(float64(left)/rate*float64(time.Second)).Round(time.Second).String()+" left")
			}
		}
	} else {
		parts = append(parts, d.Round(time.Second).String())
	}
	if r.Note != "" {
		parts = append(parts, r.Note)
	}
	return strings.Join(parts, ", ")
}

// fill is how full a bar of total is: bytes when the step has a byte
// total, else items.
func (total Counts) fill() int64 {
	if total.Bytes > 0 {
		return total.Bytes
	}
	return int64(total.Items)
}

// fillOf is c on a bar of total (see fill).
func (c Counts) fillOf(total Counts) int64 {
	if total.Bytes > 0 {
		return c.Bytes
	}
	return int64(c.Items)
}

func mb(n int64) string { return fmt.Sprintf("%.1f", float64(n)/1e6) }

// bar redraws one line in place with mpb.
func (m *Meter) bar() {
	defer close(m.done)
	p := mpb.New(mpb.WithOutput(m.out), mpb.WithWidth(24), mpb.WithRefreshRate(200*time.Millisecond))
	r := m.poll()
	status := m.status(r)
	var mu sync.Mutex
	// Built without a total, the bar completes only when told (at Stop),
	// and takes its total whenever the step learns it.
	full := r.Total.fill()
	b := p.AddBar(0,
		mpb.PrependDecorators(decor.Name(m.label+" ")),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
			mu.Lock()
			defer mu.Unlock()
			return " " + status
		})),
	)
	b.SetTotal(full, false)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		var quit bool
		select {
		case <-t.C:
		case <-m.quit:
			quit = true
		}
		r := m.poll()
		mu.Lock()
		status = m.status(r)
		mu.Unlock()
		if f := r.Total.fill(); f != full {
			full = f
			b.SetTotal(full, false)
		}
		c := r.Done
		b.SetCurrent(c.fillOf(r.Total))
		if !quit {
			continue
		}
		if full > 0 && c.Items >= r.Total.Items && c.Bytes >= r.Total.Bytes {
			b.SetTotal(full, true)
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
			fmt.Fprintf(m.out, "%s: %s\n", m.label, m.status(m.poll()))
		case <-m.quit:
			return
		}
	}
}

// Latest holds the last state a step reports through a callback as it
// goes (a writer's Options.Progress: bytes done of a total it knows once
// it has planned) for a Meter's Watch. The step and the meter may use it
// at once.
type Latest struct {
	mu sync.Mutex
	r  Report
}

// Set records r.
func (l *Latest) Set(r Report) {
	l.mu.Lock()
	l.r = r
	l.mu.Unlock()
}

// SetBytes records done of total bytes; it fits a writer's Progress
// option.
func (l *Latest) SetBytes(done, total int64) {
	l.Set(Report{Done: Counts{Bytes: done}, Total: Counts{Bytes: total}})
}

// Report is the last state recorded, for Options.Watch.
func (l *Latest) Report() Report {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r
}

// Reading returns r, which holds total bytes, reporting the bytes read
// so far to report (a Latest.SetBytes) at each Read: for steps that consume a
// file (a checksum, a compression).
func Reading(r io.Reader, total int64, report func(done, total int64)) io.Reader {
	report(0, total)
	return &reading{r: r, total: total, report: report}
}

type reading struct {
	r           io.Reader
	done, total int64
	report      func(done, total int64)
}

func (r *reading) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.done += int64(n)
	r.report(r.done, r.total)
	return n, err
}
