package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Credentials gives the user and secret for a registry host ("" and ""
// for anonymous access).
type Credentials func(host string) (user, secret string, err error)

// Transport answers a registry's 401 challenges: Bearer (a token from
// the realm, anonymous or with the credentials, cached per host,
// repository and pull or push) and Basic. Requests go out without
// authorization until a challenge says what the registry wants.
type Transport struct {
	Base        http.RoundTripper // nil: http.DefaultTransport
	Credentials Credentials       // nil: anonymous

	mu     sync.Mutex
	tokens map[string]token     // by tokenKey
	basic  map[string]bool      // hosts that asked for Basic
	logins map[string][2]string // Credentials' answers by host: a helper runs once
}

type token struct {
	value   string
	expires time.Time
}

// maxTokenResponse bounds a token server's answer.
const maxTokenResponse = 1 << 20

func (t *Transport) base() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}

func (t *Transport) creds(host string) (string, string, error) {
	if t.Credentials == nil {
		return "", "", nil
	}
	t.mu.Lock()
	l, ok := t.logins[host]
	t.mu.Unlock()
	if ok {
		return l[0], l[1], nil
	}
	u, s, err := t.Credentials(host)
	if err != nil {
		return "", "", fmt.Errorf("credentials for %s: %w", host, err)
	}
	t.mu.Lock()
	if t.logins == nil {
		t.logins = map[string][2]string{}
	}
	t.logins[host] = [2]string{u, s}
	t.mu.Unlock()
	return u, s, nil
}

// tokenKey is what a token is good for: pull (GET, HEAD) or push (the
// rest) on the repository the path names.
func tokenKey(req *http.Request) string {
	repo := strings.TrimPrefix(req.URL.Path, "/v2/")
	for _, sep := range []string{"/manifests/", "/blobs/"} {
		if i := strings.Index(repo, sep); i >= 0 {
			repo = repo[:i]
		}
	}
	action := "push"
	if req.Method == http.MethodGet || req.Method == http.MethodHead {
		action = "pull"
	}
	return req.URL.Host + " " + repo + " " + action
}

// RoundTrip sends req with what earlier challenges asked for, and on a
// 401 answers its challenge and sends it once more.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	key := tokenKey(req)
	authed, err := t.authorize(req, key)
	if err != nil {
		return nil, err
	}
	resp, err := t.base().RoundTrip(authed)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	// A body already sent can only be sent again if it can be rewound.
	if req.Body != nil && req.GetBody == nil {
		return resp, nil
	}
	scheme, params := parseChallenge(resp.Header.Get("WWW-Authenticate"))
	switch scheme {
	case "bearer":
		tok, err := t.fetchToken(req.Context(), req.URL.Host, params)
		if err != nil {
			resp.Body.Close()
			return nil, err
		}
		t.mu.Lock()
		if t.tokens == nil {
			t.tokens = map[string]token{}
		}
		t.tokens[key] = tok
		t.mu.Unlock()
	case "basic":
		u, s, err := t.creds(req.URL.Host)
		if err != nil {
			resp.Body.Close()
			return nil, err
		}
		if u == "" && s == "" {
			return resp, nil // nothing to answer with: the 401 is the answer
		}
		t.mu.Lock()
		if t.basic == nil {
			t.basic = map[string]bool{}
		}
		t.basic[req.URL.Host] = true
		t.mu.Unlock()
	default:
		return resp, nil
	}
	resp.Body.Close()
	again := req.Clone(req.Context())
	if req.GetBody != nil {
		if again.Body, err = req.GetBody(); err != nil {
			return nil, err
		}
	}
	if again, err = t.authorize(again, key); err != nil {
		return nil, err
	}
	resp, err = t.base().RoundTrip(again)
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		resp.Body.Close()
		return nil, fmt.Errorf("%s %s: 401 again after answering the registry's challenge: log in (docker login %s) or check the login", req.Method, req.URL.Redacted(), req.URL.Host)
	}
	return resp, err
}

// authorize returns req with the Authorization an earlier challenge
// asked for, or req itself.
func (t *Transport) authorize(req *http.Request, key string) (*http.Request, error) {
	t.mu.Lock()
	tok, hasTok := t.tokens[key]
	basic := t.basic[req.URL.Host]
	t.mu.Unlock()
	switch {
	case hasTok && time.Now().Before(tok.expires):
		r := req.Clone(req.Context())
		r.Header.Set("Authorization", "Bearer "+tok.value)
		return r, nil
	case basic:
		u, s, err := t.creds(req.URL.Host)
		if err != nil {
			return nil, err
		}
		r := req.Clone(req.Context())
		r.SetBasicAuth(u, s)
		return r, nil
	}
	return req, nil
}

// fetchToken GETs a token from the challenge's realm for its service and
// scope, with the credentials when there are any.
func (t *Transport) fetchToken(ctx context.Context, host string, params map[string]string) (token, error) {
	realm := params["realm"]
	u, err := url.Parse(realm)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return token{}, fmt.Errorf("registry %s: its challenge names the token realm %q, not an http(s) URL", host, realm)
	}
	q := u.Query()
	if s := params["service"]; s != "" {
		q.Set("service", s)
	}
	if s := params["scope"]; s != "" {
		q.Set("scope", s)
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return token{}, err
	}
	user, secret, err := t.creds(host)
	if err != nil {
		return token{}, err
	}
	if user != "" || secret != "" {
		// Never over plain HTTP to another machine.
		if u.Scheme != "https" && !(Ref{Host: u.Host}).Loopback() {
			return token{}, fmt.Errorf("registry %s: its token realm %s is plain HTTP: not sending the credentials there", host, realm)
		}
		req.SetBasicAuth(user, secret)
	}
	resp, err := t.base().RoundTrip(req)
	if err != nil {
		return token{}, fmt.Errorf("token for %s from %s: %w", host, u.Redacted(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return token{}, fmt.Errorf("token for %s from %s: %s (check the login for %s)", host, u.Redacted(), resp.Status, host)
	}
	var body struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxTokenResponse)).Decode(&body); err != nil {
		return token{}, fmt.Errorf("token for %s from %s: %w", host, u.Redacted(), err)
	}
	tok := token{value: body.Token}
	if tok.value == "" {
		tok.value = body.AccessToken
	}
	if tok.value == "" || strings.ContainsAny(tok.value, "\r\n") {
		return token{}, fmt.Errorf("token for %s from %s: no usable token in the answer", host, u.Redacted())
	}
	// The spec's default lifetime is 60 s; a little margin for the clock.
	life := time.Duration(max(body.ExpiresIn, 60)) * time.Second
	tok.expires = time.Now().Add(life - 10*time.Second)
	return tok, nil
}

// parseChallenge splits `Bearer realm="...",service="...",scope="..."`
// into the lowercased scheme and its parameters.
func parseChallenge(h string) (string, map[string]string) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	params := map[string]string{}
	for rest = strings.TrimSpace(rest); rest != ""; {
		k, v, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		k = strings.ToLower(strings.TrimSpace(k))
		v = strings.TrimSpace(v)
		if strings.HasPrefix(v, `"`) {
			// Quoted: up to the closing quote, backslash escapes.
			var b strings.Builder
			i := 1
			for ; i < len(v) && v[i] != '"'; i++ {
				if v[i] == '\\' && i+1 < len(v) {
					i++
				}
				b.WriteByte(v[i])
			}
			params[k] = b.String()
			rest = v[min(i+1, len(v)):]
		} else {
			val, after, _ := strings.Cut(v, ",")
			params[k] = strings.TrimSpace(val)
			rest = "," + after
		}
		rest = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), ","))
	}
	return strings.ToLower(scheme), params
}
