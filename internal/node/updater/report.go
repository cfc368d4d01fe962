package updater

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/update"
)

// ReportKeyFile is the private key the node signs its status reports
// with, relative to Card.Top: in the state subvolume, so every version
// of the node signs with the same key. The node makes it at its first
// report; it never leaves the node (an image holds no such key, so two
// cards flashed from one image still have keys of their own).
const ReportKeyFile = "state/node/report-key"

// reportTimeout bounds a report, tries again included: a check or apply
// waits for it, and a build host that does not answer must not hold up
// a boot. A variable for tests.
var reportTimeout = 15 * time.Second

// hostname is the kernel's hostname; tests replace it.
var hostname = os.Hostname

// StatusURL is the build host the root names in StatusURLFile, "" if
// none.
func (c *Card) StatusURL() string {
	return lastLine(filepath.Join(c.Root, StatusURLFile))
}

// ReportIfConfigured reports the node's status to the build host in
// StatusURLFile, if the root names one. A failure is only logged: the
// build host being down must never fail a check or an apply (the node
// would reboot or roll back for it).
func (c *Card) ReportIfConfigured(ctx context.Context) {
	base := c.StatusURL()
	if base == "" {
		return
	}
	if err := c.Report(ctx, base); err != nil {
		c.Log("status report: %v (the build host's view of this node is out of date; nothing else is affected)", err)
	}
}

// Report sends the card's status to the build host at base (mkimage
// serve --status-dir DIR): POST base/status/NODE, NODE the kernel's
// hostname, signed with the node's report key (made now if it has none).
func (c *Card) Report(ctx context.Context, base string) error {
	u, body, key, sig, err := c.signedStatus(base, update.StatusPath)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	var why error // the last error of an attempt the deadline did not cut
	for {
		_, err = post(ctx, u, body, key, sig)
		var refused *refusedError
		if err == nil || errors.As(err, &refused) {
			break
		}
		if why == nil || ctx.Err() == nil {
			why = err
		}
		// At boot the check may run before the network is up: try
		// again while the time allows.
		select {
		case <-ctx.Done():
			return fmt.Errorf("POST %s (for %v): %w", u, reportTimeout, why)
		case <-time.After(reportTimeout / 5):
		}
	}
	if err != nil {
		return fmt.Errorf("POST %s: %w", u, err)
	}
	c.Log("status reported to %s", u)
	return nil
}

// signedStatus is the node's status report for base+path+NODE
// (update.StatusPath or update.LeasePath): the URL, the body and the key
// and signature headers.
func (c *Card) signedStatus(base, path string) (u string, body []byte, key, sig string, err error) {
	node, err := c.nodeName()
	if err != nil {
		return "", nil, "", "", err
	}
	pu, err := url.Parse(base)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		return "", nil, "", "", fmt.Errorf("status URL %q (from /%s or the command line): want http://HOST[:PORT] of mkimage serve --status-dir", base, StatusURLFile)
	}
	s, err := c.Status()
	if err != nil {
		return "", nil, "", "", err
	}
	k, err := c.reportKey(node)
	if err != nil {
		return "", nil, "", "", err
	}
	body, key, sig, err = update.SignReport(update.Report{Node: node, Time: time.Now().UTC(), Boot: c.bootID(), Status: s}, k)
	return pu.JoinPath(path, node).String(), body, key, sig, err
}

// nodeName is the name the node reports under: Card.Node, or else the
// kernel's hostname (nodeinit sets it from the inventory).
func (c *Card) nodeName() (string, error) {
	node := c.Node
	if node == "" {
		var err error
		if node, err = hostname(); err != nil {
			return "", fmt.Errorf("the node's hostname: %w", err)
		}
	}
	return node, update.CheckNodeName(node)
}

// bootID is Card.BootID, or else the kernel's id of this boot ("" if
// unknown).
func (c *Card) bootID() string {
	if c.BootID != "" {
		return c.BootID
	}
	return lastLine("/proc/sys/kernel/random/boot_id")
}

// Lease asks the build host at base (the status URL) for a reboot lease
// and waits, asking again as the server says (Retry-After) or every poll
// if set, until it is granted or wait has passed. The server ends the
// lease at the node's first report from its next boot.
func (c *Card) Lease(ctx context.Context, base string, wait, poll time.Duration) error {
	return c.lease(ctx, base, wait, poll, true)
}

// FallbackLease is Lease for the reboot out of a version whose checks
// failed, which must happen: it waits (up to wait) only while the build
// host answers that others are rebooting, and gives up at once when the
// host cannot be reached or refuses, so a node whose network is what
// failed falls back without delay. The caller reboots either way.
func (c *Card) FallbackLease(ctx context.Context, base string, wait, poll time.Duration) error {
	return c.lease(ctx, base, wait, poll, false)
}

// lease is Lease; retryUnreachable says whether to keep asking a host
// that cannot be reached.
func (c *Card) lease(ctx context.Context, base string, wait, poll time.Duration, retryUnreachable bool) error {
	u, body, key, sig, err := c.signedStatus(base, update.LeasePath)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	start := time.Now()
	for {
		ans, err := post(ctx, u, body, key, sig)
		var refused *refusedError
		switch {
		case err == nil:
			c.Log("reboot lease granted by %s after %v (%d of at most %d nodes rebooting)", u, time.Since(start).Round(time.Second), len(ans.answer.Held), ans.answer.Max)
			return nil
		case errors.As(err, &refused) && refused.code == http.StatusTooManyRequests:
			c.Log("waiting for a reboot lease: %d nodes are rebooting (%s), at most %d at once", len(ans.answer.Held), strings.Join(ans.answer.Held, ", "), ans.answer.Max)
		case errors.As(err, &refused):
			return fmt.Errorf("reboot lease: POST %s: %w", u, err)
		case !retryUnreachable:
			return fmt.Errorf("reboot lease: POST %s: %w", u, err)
		default:
			c.Log("reboot lease: POST %s: %v; asking again", u, err)
		}
		delay := poll
		if delay <= 0 {
			delay = min(max(ans.retryAfter, time.Second), time.Minute)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no reboot lease from %s in %v (last: %v): not rebooting now; the installed version is tried at the next reboot or run of the update timer", u, wait, err)
		case <-time.After(delay):
		}
	}
}

// refusedError is the build host's answer to a report it did not take.
type refusedError struct {
	code        int
	status, msg string
}

func (e *refusedError) Error() string { return e.status + ": " + e.msg }

// answer is what the build host said to a POST.
type answer struct {
	answer     update.LeaseAnswer // a lease request's answer
	retryAfter time.Duration
}

// post sends one signed report (or lease request).
func post(ctx context.Context, u string, body []byte, key, sig string) (answer, error) {
	var a answer
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return a, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(update.ReportKeyHeader, key)
	req.Header.Set(update.ReportSignatureHeader, sig)
	resp, err := http.DefaultClient.Do(req)
	if ue := new(url.Error); errors.As(err, &ue) {
		return a, ue.Err // the caller names the URL
	}
	if err != nil {
		return a, err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
		a.retryAfter = time.Duration(s) * time.Second
	}
	if resp.Header.Get("Content-Type") == "application/json" {
		json.Unmarshal(msg, &a.answer)
	}
	if resp.StatusCode/100 != 2 {
		// The server says why (a pinned key, a bad name) in a line.
		if len(msg) > 1024 {
			msg = msg[:1024]
		}
		return a, &refusedError{resp.StatusCode, resp.Status, strings.TrimSpace(string(msg))}
	}
	return a, nil
}

// reportKey returns the node's report key, making it at the first
// report.
func (c *Card) reportKey(node string) (update.PrivateKey, error) {
	p := filepath.Join(c.Top, ReportKeyFile)
	k, err := update.ReadPrivateKey(p)
	if err == nil {
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return k, fmt.Errorf("the status report key: %w (remove it to have a new one made, then remove the node's pin on the build host)", err)
	}
	if k, err = update.GenerateKey(rand.Reader); err != nil {
		return k, err
	}
	k.Comment = "status reports of " + node
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return k, err
	}
	// A public half without its private key (removed by hand) is of no
	// use and would stop WriteKeyPair.
	os.Remove(p + ".pub")
	if err := update.WriteKeyPair(p, k); err != nil {
		return k, fmt.Errorf("the status report key: %w", err)
	}
	c.Log("made the key this node signs its status reports with: %s", k.Public())
	return k, nil
}
