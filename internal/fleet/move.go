package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mkimage/mkimage/internal/cluster/plan"
	"github.com/mkimage/mkimage/internal/shquote"
)

// Move moves a container from one node to another: the build host runs
// `nodeinit container` on the nodes over SSH and pipes the node it
// leaves's stream into the node it goes to (the nodes need no keys for
// each other; the build host's own SSH access to them, the cluster's
// ssh_authorized_keys, is all it takes). Two passes: the first copies
// the container while it runs, the last stops it, sends only what
// changed and starts it on the new node; then every node whose plan the
// move changes (the two nodes, the gateways routing to it) records and
// applies the placement (nodeinit container place). The container is
// down from the stop to the start, and unreachable through the
// gateways until they route to the new node.
type Move struct {
	Baked     *plan.Baked
	Container string
	// From is the node the container runs on; "" for the cluster
	// config's (the build host does not know the nodes' placement).
	From, To string
	// SSH is the ssh command and its options ("ssh" when empty);
	// BatchMode=yes is added: nothing may stop to ask.
	SSH []string
	// User logs in on the nodes ("root" when empty); Nodeinit is the
	// node's command ("nodeinit" when empty).
	User, Nodeinit string
	// Live tries CRIU: the container is checkpointed instead of stopped
	// and restored on the new node, where both nodes' CRIU can; it is
	// moved cold otherwise, and MoveReport.NotLive says why.
	Live bool
	Log  func(format string, a ...any)
}

// MoveReport is what a move did and how long the container was down.
type MoveReport struct {
	From, To          string
	First, Last       int64 // the passes' stream bytes
	FirstTook         time.Duration
	LastTook          time.Duration
	Ran               bool          // it ran on From, and was started on To
	Live              bool          // restored from a CRIU checkpoint on To
	NotLive           string        // why a Live move was cold
	Stopped           time.Time     // when the last pass began stopping it (zero if it did not)
	Down              time.Duration // from its stop on From to its start on To (or its install)
	Routed            time.Duration // from its stop to the last node re-planned
	Placed, NotPlaced []string      // the nodes re-planned, and those that failed
}

// nodeOf is the plan of node name, which must have an address.
func nodeOf(b *plan.Baked, name string) (plan.Plan, error) {
	n, ok := b.Node(name)
	if !ok {
		return plan.Plan{}, fmt.Errorf("no node %s in the cluster config", name)
	}
	if n.IP == "" {
		return plan.Plan{}, fmt.Errorf("node %s has no static address to reach it by", name)
	}
	return n, nil
}

// Run moves the container. A failure before the new node put the
// container in place puts it back on the old node (nodeinit container
// abort), started again if it ran; after that, the container stays on
// the new node and the error says what is left to do.
func (m *Move) Run(ctx context.Context) (MoveReport, error) {
	if m.Log == nil {
		m.Log = func(string, ...any) {}
	}
	if m.From == "" {
		m.From = m.Baked.ContainerNode(m.Container)
	}
	r := MoveReport{From: m.From, To: m.To}
	if m.From == "" {
		return r, fmt.Errorf("container %s is not in the cluster config", m.Container)
	}
	if m.From == m.To {
		return r, fmt.Errorf("container %s: already on node %s", m.Container, m.To)
	}
	from, err := nodeOf(m.Baked, m.From)
	if err != nil {
		return r, err
	}
	to, err := nodeOf(m.Baked, m.To)
	if err != nil {
		return r, err
	}
	replan, err := m.replanned()
	if err != nil {
		return r, err
	}

	m.Log("move: %s from %s to %s: first pass, while it runs", m.Container, m.From, m.To)
	p1, err := m.pass(ctx, from, to, "1")
	r.First, r.FirstTook = p1.bytes, p1.took
	if err != nil {
		// Nothing stopped yet: only the copy goes.
		err = fmt.Errorf("first pass: %w", err)
		if ferr := m.node(context.WithoutCancel(ctx), from, nil, nil, nil, "finish", m.Container); ferr != nil {
			m.Log("move: deleting the first pass's copy on %s: %v", m.From, ferr)
		}
		return r, fmt.Errorf("%w (%s was not stopped)", err, m.Container)
	}
	m.Log("move: first pass: %d bytes in %v", p1.bytes, p1.took.Round(time.Millisecond))
	m.Log("move: last pass: stopping %s on %s", m.Container, m.From)
	p2, err := m.pass(ctx, from, to, "2")
	r.Last, r.LastTook, r.Ran, r.Live, r.NotLive = p2.bytes, p2.took, p2.ran, p2.live, p2.notLive
	if p2.installed.IsZero() {
		if err == nil {
			err = errors.New("the new node did not say it put the container in place")
		}
		return r, m.abort(ctx, from, fmt.Errorf("last pass: %w", err))
	}
	var errs []error
	if err != nil {
		// In place on To: never started again on From.
		errs = append(errs, fmt.Errorf("container %s is in place on %s, but: %w", m.Container, m.To, err))
	}
	r.Stopped = p2.stopped
	if !p2.stopped.IsZero() {
		end := p2.installed
		if !p2.started.IsZero() {
			end = p2.started
		}
		r.Down = end.Sub(p2.stopped)
	}
	m.Log("move: last pass: %d bytes in %v; %s in place on %s", p2.bytes, p2.took.Round(time.Millisecond), m.Container, m.To)

	// Every re-planned node at once: the gateways' routes end the
	// service's downtime.
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, name := range replan {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, _ := m.Baked.Node(name)
			err := m.node(ctx, n, nil, nil, nil, "place", m.Container, m.To)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				r.NotPlaced = append(r.NotPlaced, name)
				errs = append(errs, fmt.Errorf("placement on %s (run nodeinit container place %s %s there): %w", name, m.Container, m.To, err))
				return
			}
			r.Placed = append(r.Placed, name)
		}()
	}
	wg.Wait()
	slices.Sort(r.Placed)
	slices.Sort(r.NotPlaced)
	if !p2.stopped.IsZero() {
		r.Routed = time.Since(p2.stopped)
	}
	if err := m.node(ctx, from, nil, nil, nil, "finish", m.Container); err != nil {
		errs = append(errs, fmt.Errorf("deleting the move's snapshots on %s: %w", m.From, err))
	}
	return r, errors.Join(errs...)
}

// replanned are the nodes whose plan the move changes, the two nodes
// first.
func (m *Move) replanned() ([]string, error) {
	plans := func(node string) (map[string]string, error) {
		b := *m.Baked // Place replaces b.Nodes, never changing m.Baked's
		if err := b.Place(plan.Placement{m.Container: node}); err != nil {
			return nil, err
		}
		out := map[string]string{}
		for _, n := range b.Nodes {
			j, _ := json.Marshal(n)
			out[n.Name] = string(j)
		}
		return out, nil
	}
	before, err := plans(m.From)
	if err != nil {
		return nil, err
	}
	after, err := plans(m.To)
	if err != nil {
		return nil, err
	}
	names := []string{m.From, m.To}
	for _, n := range m.Baked.Nodes {
		if before[n.Name] != after[n.Name] && !slices.Contains(names, n.Name) {
			if n.IP == "" {
				return nil, fmt.Errorf("node %s routes to container %s and has no static address to reach it by", n.Name, m.Container)
			}
			names = append(names, n.Name)
		}
	}
	return names, nil
}

// abort puts the container back on from after cause, and says how that
// went.
func (m *Move) abort(ctx context.Context, from plan.Plan, cause error) error {
	m.Log("move: %v; putting %s back on %s", cause, m.Container, m.From)
	// A cancelled move still puts the container back.
	ctx = context.WithoutCancel(ctx)
	if err := m.node(ctx, from, nil, nil, nil, "abort", m.Container); err != nil {
		return fmt.Errorf("%w; and putting it back on %s failed (run nodeinit container abort %s there): %w", cause, m.From, m.Container, err)
	}
	return fmt.Errorf("%w (%s is back on %s)", cause, m.Container, m.From)
}

// passResult is one pass as the build host saw it.
type passResult struct {
	bytes                       int64
	took                        time.Duration
	ran, live                   bool
	notLive                     string
	stopped, installed, started time.Time
}

// pass pipes pass p from one node's send into the other's receive.
func (m *Move) pass(ctx context.Context, from, to plan.Plan, p string) (passResult, error) {
	var res passResult
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	var sent atomic.Int64
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				m.Log("move: pass %s: %d bytes so far", p, sent.Load())
			}
		}
	}()
	var mu sync.Mutex
	mark := func(line string) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case line == plan.MoveStopping:
			res.stopped = time.Now()
		case line == plan.MoveInstalled:
			res.installed = time.Now()
		case line == plan.MoveStarted+"true":
			res.started, res.ran = time.Now(), true
		case line == plan.MoveLive:
			res.live = true
		case strings.HasPrefix(line, plan.MoveNotLive):
			res.notLive = strings.TrimPrefix(line, plan.MoveNotLive)
		}
	}
	var sendErr error
	sendDone := make(chan struct{})
	go func() {
		defer close(sendDone)
		args := []string{"send", "--pass", p, m.Container}
		if m.Live && p == "2" {
			args = []string{"send", "--pass", p, "--live", m.Container}
		}
		sendErr = m.node(ctx, from, nil, &countTo{w: pw, n: &sent}, mark, args...)
		if sendErr != nil {
			sendErr = fmt.Errorf("%s: %w", from.Name, sendErr)
		}
		pw.CloseWithError(sendErr) // nil: EOF

	}()
	recvErr := m.node(ctx, to, pr, nil, mark, "receive", "--pass", p, m.Container)
	if recvErr != nil {
		// Nothing reads the stream any more.
		cancel()
		pr.CloseWithError(recvErr)
		recvErr = fmt.Errorf("%s: %w", to.Name, recvErr)
	}
	<-sendDone
	res.bytes, res.took = sent.Load(), time.Since(start)
	return res, errors.Join(recvErr, sendErr)
}

// node runs `nodeinit container ARGS...` on n over SSH, with stdin and
// stdout as given; its stderr lines are logged under the node's name,
// given to seen, and the last ones returned in the error.
func (m *Move) node(ctx context.Context, n plan.Plan, stdin io.Reader, stdout io.Writer, seen func(string), args ...string) error {
	argv := slices.Clone(m.SSH)
	if len(argv) == 0 {
		argv = []string{"ssh"}
	}
	user, nodeinit := m.User, m.Nodeinit
	if user == "" {
		user = "root"
	}
	if nodeinit == "" {
		nodeinit = "nodeinit"
	}
	argv = append(argv, "-o", "BatchMode=yes", "--", user+"@"+n.IP, shquote.Join(append([]string{nodeinit, "container"}, args...)...))
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout = stdin, stdout
	cmd.WaitDelay = 10 * time.Second
	lines := &lineLog{prefix: n.Name + ": ", log: m.Log, seen: seen}
	cmd.Stderr = lines
	err := cmd.Run()
	lines.flush()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", args[0], err, lines.tail())
	}
	return nil
}

// countTo counts what it passes on.
type countTo struct {
	w io.Writer
	n *atomic.Int64
}

func (c *countTo) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// lineLog logs each line written to it and keeps the last few.
type lineLog struct {
	prefix string
	log    func(string, ...any)
	mu     sync.Mutex
	part   []byte
	last   []string
	seen   func(string)
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.part = append(l.part, p...)
	for {
		i := slices.Index(l.part, '\n')
		if i < 0 {
			break
		}
		l.line(string(l.part[:i]))
		l.part = l.part[i+1:]
	}
	return len(p), nil
}

func (l *lineLog) line(s string) {
	if l.seen != nil {
		l.seen(s)
	}
	l.log("%s%s", l.prefix, s)
	l.last = append(l.last, s)
	if len(l.last) > 5 {
		l.last = l.last[1:]
	}
}

func (l *lineLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.part) > 0 {
		l.line(string(l.part))
		l.part = nil
	}
}

func (l *lineLog) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.last, "; ")
}
