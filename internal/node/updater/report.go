package updater

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
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
	node, err := hostname()
	if err != nil {
		return fmt.Errorf("the node's hostname: %w", err)
	}
	if err := update.CheckNodeName(node); err != nil {
		return err
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("status URL %q (from /%s or the command line): want http://HOST[:PORT] of mkimage serve --status-dir", base, StatusURLFile)
	}
	u = u.JoinPath("status", node)
	s, err := c.Status()
	if err != nil {
		return err
	}
	key, err := c.reportKey(node)
	if err != nil {
		return err
	}
	body, keyHdr, sig, err := update.SignReport(update.Report{Node: node, Time: time.Now().UTC(), Status: s}, key)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	var why error // the last error of an attempt the deadline did not cut
	for {
		err = post(ctx, u.String(), body, keyHdr, sig)
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

// refusedError is the build host's answer to a report it did not take.
type refusedError struct {
	status, msg string
}

func (e *refusedError) Error() string { return e.status + ": " + e.msg }

// post sends one signed report.
func post(ctx context.Context, u string, body []byte, key, sig string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(update.ReportKeyHeader, key)
	req.Header.Set(update.ReportSignatureHeader, sig)
	resp, err := http.DefaultClient.Do(req)
	if ue := new(url.Error); errors.As(err, &ue) {
		return ue.Err // the caller names the URL
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		// The server says why (a pinned key, a bad name) in a line.
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return &refusedError{resp.Status, strings.TrimSpace(string(msg))}
	}
	return nil
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
