package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/mkimage/mkimage/internal/update"
)

// Client speaks the OCI distribution API to registries.
type Client struct {
	// PlainHTTP speaks HTTP rather than HTTPS to every registry; without
	// it only a registry on loopback gets plain HTTP.
	PlainHTTP bool
	// HTTP sends the requests; its Transport should be a *Transport
	// (New makes one) so that challenges are answered.
	HTTP *http.Client
}

// New returns a client whose requests answer challenges with creds (nil:
// anonymous) over base (nil: http.DefaultTransport).
func New(creds Credentials, base http.RoundTripper, plainHTTP bool) *Client {
	return &Client{PlainHTTP: plainHTTP, HTTP: &http.Client{Transport: &Transport{Base: base, Credentials: creds}}}
}

// ErrNotFound is what an error wraps when the registry has no such
// manifest or blob.
var ErrNotFound = errors.New("not found in the registry")

func (c *Client) client() *http.Client {
	if c.HTTP == nil {
		return http.DefaultClient
	}
	return c.HTTP
}

// RepoURL is the API base of r's repository: scheme://host/v2/repo.
func (c *Client) RepoURL(r Ref) string {
	scheme := "https"
	if c.PlainHTTP || r.Loopback() {
		scheme = "http"
	}
	return scheme + "://" + r.Host + "/v2/" + r.Repo
}

// BlobURL is where the blob digest of r's repository is read.
func (c *Client) BlobURL(r Ref, digest string) string {
	return c.RepoURL(r) + "/blobs/" + digest
}

func (c *Client) do(ctx context.Context, method, u string, body io.Reader, size int64, hdr map[string]string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = size
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w (is the registry reachable? it is spoken to over HTTPS unless it is on loopback or mkimage has --plain-http)", method, u, err)
	}
	return resp, nil
}

// statusError reads a failed response's body into the error (the
// registry says why there) and closes it.
func statusError(resp *http.Response, what string) error {
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	err := fmt.Errorf("%s %s: %s: %s", resp.Request.Method, resp.Request.URL.Redacted(), resp.Status, strings.TrimSpace(string(msg)))
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%s: %w: %w", what, ErrNotFound, err)
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return fmt.Errorf("%s: %w (log in to the registry: docker login %s)", what, err, resp.Request.URL.Host)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// GetManifest fetches r's manifest as an update bundle's (ParseManifest)
// and returns it with its raw bytes. When r has a digest, the bytes must
// have it.
func (c *Client) GetManifest(ctx context.Context, r Ref) (Manifest, []byte, error) {
	u := c.RepoURL(r) + "/manifests/" + r.reference()
	resp, err := c.do(ctx, http.MethodGet, u, nil, 0, map[string]string{"Accept": MediaTypeManifest})
	if err != nil {
		return Manifest{}, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return Manifest{}, nil, statusError(resp, r.String())
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxManifestSize+1))
	if err != nil {
		return Manifest{}, nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if r.Digest != "" && DigestOf(b) != r.Digest {
		return Manifest{}, nil, fmt.Errorf("%w: %s: the registry sent a manifest with digest %s", update.ErrInvalid, r, DigestOf(b))
	}
	m, err := ParseManifest(b)
	if err != nil {
		return Manifest{}, nil, fmt.Errorf("%s: %w", r, err)
	}
	return m, b, nil
}

// GetBlob reads a small blob whole (at most max bytes) and checks its
// digest.
func (c *Client) GetBlob(ctx context.Context, r Ref, d Descriptor, max int64) ([]byte, error) {
	if d.Size > max {
		return nil, fmt.Errorf("%w: %s: blob %s is %d bytes, at most %d expected", update.ErrInvalid, r, d.Digest, d.Size, max)
	}
	u := c.BlobURL(r, d.Digest)
	resp, err := c.do(ctx, http.MethodGet, u, nil, 0, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(resp, r.String())
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, d.Size+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if int64(len(b)) != d.Size || DigestOf(b) != d.Digest {
		return nil, fmt.Errorf("%w: %s: blob %s: the registry sent %d bytes with digest %s", update.ErrInvalid, r, d.Digest, len(b), DigestOf(b))
	}
	return b, nil
}

// HasBlob says whether r's repository holds the blob digest.
func (c *Client) HasBlob(ctx context.Context, r Ref, digest string) (bool, error) {
	resp, err := c.do(ctx, http.MethodHead, c.BlobURL(r, digest), nil, 0, nil)
	if err != nil {
		return false, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		resp.Body.Close()
		return true, nil
	case http.StatusNotFound:
		resp.Body.Close()
		return false, nil
	}
	return false, statusError(resp, r.String())
}

// PushBlob uploads the blob d unless the repository has it already
// (pushed false): POST an upload, then PUT it whole with its digest.
// open gives its content, again when a challenge makes the PUT repeat.
func (c *Client) PushBlob(ctx context.Context, r Ref, d Descriptor, open func() (io.ReadCloser, error)) (pushed bool, err error) {
	if has, err := c.HasBlob(ctx, r, d.Digest); err != nil || has {
		return false, err
	}
	resp, err := c.do(ctx, http.MethodPost, c.RepoURL(r)+"/blobs/uploads/", nil, 0, nil)
	if err != nil {
		return false, err
	}
	if resp.StatusCode != http.StatusAccepted {
		return false, statusError(resp, "starting the upload of "+d.Digest)
	}
	resp.Body.Close()
	loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if err != nil || resp.Header.Get("Location") == "" {
		return false, fmt.Errorf("%s: the registry gave no upload location (%q)", r, resp.Header.Get("Location"))
	}
	q := loc.Query()
	q.Set("digest", d.Digest)
	loc.RawQuery = q.Encode()

	body, err := open()
	if err != nil {
		return false, err
	}
	defer func() { body.Close() }()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, loc.String(), body)
	if err != nil {
		return false, err
	}
	req.ContentLength = d.Size
	req.Header.Set("Content-Type", "application/octet-stream")
	req.GetBody = func() (io.ReadCloser, error) {
		body.Close()
		b, err := open()
		body = b
		return b, err
	}
	resp, err = c.client().Do(req)
	if err != nil {
		return false, fmt.Errorf("PUT %s: %w", loc.Redacted(), err)
	}
	if resp.StatusCode != http.StatusCreated {
		return false, statusError(resp, "uploading "+d.Digest)
	}
	resp.Body.Close()
	return true, nil
}

// PutManifest stores the manifest b under r's tag (or digest, without a
// tag) and returns its digest. Its Content-Type is the mediaType b names
// (an image index, a manifest), an OCI manifest's when it names none.
func (c *Client) PutManifest(ctx context.Context, r Ref, b []byte) (string, error) {
	ref := r.Tag
	if ref == "" {
		ref = r.Digest
	}
	if ref == "" {
		return "", fmt.Errorf("%s: pushing needs a tag", r)
	}
	u := c.RepoURL(r) + "/manifests/" + ref
	resp, err := c.do(ctx, http.MethodPut, u, strings.NewReader(string(b)), int64(len(b)), map[string]string{"Content-Type": mediaTypeOf(b, MediaTypeManifest)})
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusCreated {
		return "", statusError(resp, "storing the manifest of "+r.String())
	}
	resp.Body.Close()
	return DigestOf(b), nil
}

// SumOf is the hex sha256 of the blob digest d ("sha256:hex").
func SumOf(d string) string { return strings.TrimPrefix(d, "sha256:") }
