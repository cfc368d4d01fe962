package flash

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/mkimage/mkimage/internal/bmap"
	"github.com/mkimage/mkimage/internal/build/progress"
)

// display polls the writers' counters, so the write path only stores
// one atomic per chunk whatever the display does.
type display struct {
	quit chan struct{}
	done chan struct{}
}

func (p *display) stop() {
	if p != nil {
		close(p.quit)
		<-p.done
	}
}

func startProgress(opt Options, ws []*writer, m *bmap.Map) *display {
	if opt.Progress == nil {
		return nil
	}
	p := &display{quit: make(chan struct{}), done: make(chan struct{})}
	if opt.Bars && progress.HasWidth(opt.Progress) {
		go p.bars(opt.Progress, ws, m)
	} else {
		go p.lines(opt.Progress, ws, m)
	}
	return p
}

// bars draws one mpb bar per target: writing, then verifying.
func (p *display) bars(out io.Writer, ws []*writer, m *bmap.Map) {
	defer close(p.done)
	c := mpb.New(mpb.WithOutput(out), mpb.WithWidth(30), mpb.WithRefreshRate(200*time.Millisecond))
	width := 0
	for _, w := range ws {
		width = max(width, len(w.t.Path))
	}
	bars := make([]*mpb.Bar, len(ws))
	for i, w := range ws {
		bars[i] = c.AddBar(m.MappedBytes(),
			mpb.PrependDecorators(
				decor.Name(w.t.Path, decor.WC{W: width + 1, C: decor.DindentRight}),
				decor.Any(func(decor.Statistics) string { s, _ := w.phase.Load().(string); return s }, decor.WC{W: 10, C: decor.DindentRight}),
			),
			mpb.AppendDecorators(
				decor.Percentage(decor.WC{W: 5}),
				decor.Any(func(s decor.Statistics) string { return fmt.Sprintf("  %s", w.speed()) }),
			),
			mpb.BarFillerOnAbort("failed"),
		)
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for quit := false; !quit; {
		select {
		case <-t.C:
		case <-p.quit: // every writer has finished: settle all bars
			quit = true
		}
		for i, w := range ws {
			b := bars[i]
			if b.Completed() || b.Aborted() {
				continue
			}
			phase, _ := w.phase.Load().(string)
			switch {
			case phase == "done" && w.failed.Load():
				b.Abort(false)
			case phase == "done":
				b.SetCurrent(m.MappedBytes())
			case quit:
				b.Abort(false)
			default:
				b.SetCurrent(min(w.done.Load(), m.MappedBytes()-1))
			}
		}
	}
	c.Wait()
}

// speed is the write rate so far, for the bar.
func (w *writer) speed() string {
	phase, _ := w.phase.Load().(string)
	if phase != "writing" {
		return ""
	}
	d := time.Since(w.started).Seconds()
	if d <= 0 {
		return ""
	}
	return fmt.Sprintf("%.1f MB/s", float64(w.done.Load())/1e6/d)
}

// lines prints a summary line every 10 s and a line when a target ends:
// readable in a log, not 46 lines per tick.
func (p *display) lines(out io.Writer, ws []*writer, m *bmap.Map) {
	defer close(p.done)
	start := time.Now()
	reported := make([]bool, len(ws))
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := start
	for {
		quit := false
		select {
		case <-t.C:
		case <-p.quit:
			quit = true
		}
		var writing, verifying int
		var least int64 = -1
		for i, w := range ws {
			phase, _ := w.phase.Load().(string)
			switch phase {
			case "writing":
				writing++
				if n := w.done.Load(); least < 0 || n < least {
					least = n
				}
			case "verifying":
				verifying++
			case "done":
				if !reported[i] {
					reported[i] = true
					if w.failed.Load() {
						fmt.Fprintf(out, "flash: %s failed: %v\n", w.t.Path, w.res.Err)
					} else {
						fmt.Fprintf(out, "flash: %s done\n", w.t.Path)
					}
				}
			}
		}
		if quit {
			return
		}
		if time.Since(last) >= 10*time.Second && writing+verifying > 0 {
			last = time.Now()
			msg := fmt.Sprintf("flash: %s: %d writing, %d verifying", time.Since(start).Round(time.Second), writing, verifying)
			if least >= 0 {
				msg += fmt.Sprintf(", slowest writer at %d%%", least*100/max(m.MappedBytes(), 1))
			}
			fmt.Fprintln(out, msg)
		}
	}
}

// WriteTable prints one line per target: bytes written, write speed
// (including the final sync) and the outcome.
func WriteTable(out io.Writer, rs []Result) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tWRITTEN\tMB/s\tRESULT")
	for _, r := range rs {
		speed := "-"
		if s := r.WriteTime.Seconds(); s > 0 && r.Written > 0 {
			speed = fmt.Sprintf("%.1f", float64(r.Written)/1e6/s)
		}
		result := "written"
		switch {
		case r.Err != nil:
			result = "FAILED: " + r.Err.Error()
		case r.Verified:
			result = fmt.Sprintf("verified (%.1fs)", r.VerifyTime.Seconds())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Target, human(r.Written), speed, result)
	}
	tw.Flush()
}

// Failed counts the results with an error.
func Failed(rs []Result) int {
	n := 0
	for _, r := range rs {
		if r.Err != nil {
			n++
		}
	}
	return n
}
