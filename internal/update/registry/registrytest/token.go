package registrytest

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// tokenServer issues the registry's Bearer tokens as Docker's token
// protocol has them: a JWT signed with ES256 by a certificate the
// registry trusts (its rootcertbundle), granting the scope asked for:
// pull to anyone, push to logins in users.
type tokenServer struct {
	srv      *httptest.Server
	key      *ecdsa.PrivateKey
	cert     []byte // DER
	users    map[string]string
	requests atomic.Int32
}

const (
	tokenService = "registrytest"
	tokenIssuer  = "registrytest-issuer"
)

// startTokenServer runs a token server until t ends and writes the
// certificate the registry checks tokens with to dir; it returns the
// registry's auth configuration.
func startTokenServer(t testing.TB, dir string, users map[string]string) (*tokenServer, string) {
	cert, key := issue(t, &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: tokenIssuer},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}, nil, nil)
	der := cert.Raw
	bundle := filepath.Join(dir, "token.pem")
	writePEM(t, bundle, "CERTIFICATE", der)
	ts := &tokenServer{key: key, cert: der, users: users}
	ts.srv = httptest.NewServer(http.HandlerFunc(ts.serve))
	t.Cleanup(ts.srv.Close)
	conf := "auth:\n  token:\n    realm: " + ts.srv.URL + "/token\n    service: " + tokenService +
		"\n    issuer: " + tokenIssuer + "\n    rootcertbundle: " + bundle + "\n"
	return ts, conf
}

func (ts *tokenServer) serve(w http.ResponseWriter, r *http.Request) {
	ts.requests.Add(1)
	q := r.URL.Query()
	user, pass, hasLogin := r.BasicAuth()
	if hasLogin && (ts.users[user] == "" || ts.users[user] != pass) {
		http.Error(w, "wrong login", http.StatusUnauthorized)
		return
	}
	type access struct {
		Type    string   `json:"type"`
		Name    string   `json:"name"`
		Actions []string `json:"actions"`
	}
	var grants []access
	for _, scope := range q["scope"] {
		// repository:NAME:ACTIONS (NAME may hold no ':' here).
		parts := strings.Split(scope, ":")
		if len(parts) != 3 || parts[0] != "repository" {
			continue
		}
		var actions []string
		for _, a := range strings.Split(parts[2], ",") {
			if a == "pull" || a == "push" && hasLogin {
				actions = append(actions, a)
			}
		}
		grants = append(grants, access{Type: "repository", Name: parts[1], Actions: actions})
	}
	now := time.Now()
	header, _ := json.Marshal(map[string]any{"typ": "JWT", "alg": "ES256", "x5c": []string{base64.StdEncoding.EncodeToString(ts.cert)}})
	claims, _ := json.Marshal(map[string]any{
		"iss": tokenIssuer, "sub": user, "aud": tokenService, "jti": now.String(),
		"iat": now.Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"access": grants,
	})
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	sum := sha256.Sum256([]byte(signing))
	rr, ss, err := ecdsa.Sign(rand.Reader, ts.key, sum[:])
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	sig := append(rr.FillBytes(make([]byte, 32)), ss.FillBytes(make([]byte, 32))...)
	json.NewEncoder(w).Encode(map[string]any{"token": signing + "." + enc.EncodeToString(sig), "expires_in": 300})
}
