// Package registrytest runs a real OCI registry for tests: Debian's
// docker-registry (distribution 2.8) on a free loopback port, storing
// blobs in a test directory, stopped at the test's end. It can be killed
// and started again on the same port and storage (a registry restarting
// in the middle of a download).
package registrytest

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/testenv"
)

// Binary is Debian's registry (package docker-registry).
const Binary = "docker-registry"

// A login for Options.Users: User with Password, as an htpasswd line
// (bcrypt, cost 4: fast enough for tests).
const (
	User     = "fleet"
	Password = "s3cret"
	HTPasswd = User + ":$2b$04$81FDxhUDebJJLKLevvWQ6uKr9tzl0wAJA8BmoUgZcUM/xD0ZmfgB2"
)

// Options says how to run the registry.
type Options struct {
	// Users, when set, turns on Basic authentication: each line of an
	// htpasswd file ("user:bcrypt-hash").
	Users []string
	// TokenUsers, when set, turns on Bearer tokens from a token server
	// the helper runs: anyone may pull, these logins (user to password)
	// may push.
	TokenUsers map[string]string
	// TLS serves HTTPS with a certificate for TLSName from a CA made
	// for the test (Registry.CA, Registry.Transport).
	TLS bool
}

// TLSName is the registry's name in its certificate: not a loopback
// name, so clients speak HTTPS to it (Registry.Transport dials it to the
// loopback address).
const TLSName = "registry.test"

// Registry is a running registry.
type Registry struct {
	Addr string // 127.0.0.1:PORT
	Dir  string // its storage
	t    testing.TB
	conf string

	tokens *tokenServer
	// CA signed the registry's certificate (Options.TLS).
	CA *x509.CertPool

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *logTail
}

// Start runs a registry until t ends.
func Start(t testing.TB, o Options) *Registry {
	t.Helper()
	testenv.NeedTools(t, Binary)
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	r := &Registry{Addr: addr, Dir: filepath.Join(dir, "storage"), t: t, conf: filepath.Join(dir, "config.yml")}
	conf := fmt.Sprintf(`version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  secret: registrytest
`, r.Dir, addr)
	// Under http:, so before the auth sections.
	if o.TLS {
		pool, cert, key := makeCert(t, dir)
		r.CA = pool
		conf += fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", cert, key)
	}
	if len(o.Users) > 0 {
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(strings.Join(o.Users, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		conf += fmt.Sprintf("auth:\n  htpasswd:\n    realm: registrytest\n    path: %s\n", htpasswd)
	}
	if o.TokenUsers != nil {
		ts, auth := startTokenServer(t, dir, o.TokenUsers)
		r.tokens = ts
		conf += auth
	}
	if err := os.WriteFile(r.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	r.Restart()
	t.Cleanup(r.Kill)
	return r
}

// Host is the registry's host:port for a reference: TLSName and the
// port with Options.TLS.
func (r *Registry) Host() string {
	if r.CA != nil {
		_, port, _ := net.SplitHostPort(r.Addr)
		return net.JoinHostPort(TLSName, port)
	}
	return r.Addr
}

// Transport reaches the registry under its Host name (dialled to its
// loopback address) and trusts roots (nil: the system's) for HTTPS.
func (r *Registry) Transport(roots *x509.CertPool) *http.Transport {
	host := r.Host()
	return &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr == host {
				addr = r.Addr
			}
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
}

// makeCert writes a CA and a certificate it signed for TLSName and
// 127.0.0.1 into dir, and returns the CA as a pool and the files.
func makeCert(t testing.TB, dir string) (*x509.CertPool, string, string) {
	t.Helper()
	ca, caKey := issue(t, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "registrytest CA"},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil, nil)
	cert, key := issue(t, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: TLSName},
		DNSNames: []string{TLSName}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, ca, caKey)
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writePEM(t, certFile, "CERTIFICATE", cert.Raw)
	writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, certFile, keyFile
}

// issue makes a P-256 key and a certificate of tmpl for it, valid from
// an hour ago for a day, signed by parent's key (nil: self-signed).
func issue(t testing.TB, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	mode := os.FileMode(0o644)
	if strings.Contains(typ, "PRIVATE") {
		mode = 0o600
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		t.Fatal(err)
	}
}

// TokenRequests is how many tokens the token server was asked for.
func (r *Registry) TokenRequests() int {
	if r.tokens == nil {
		return 0
	}
	return int(r.tokens.requests.Load())
}

// Corrupt flips the first byte of the stored blob whose sha256 is sum
// (hex), where distribution's filesystem driver keeps it: the registry
// then serves other content under the digest, as a damaged or tampered
// store would.
func (r *Registry) Corrupt(sum string) {
	r.t.Helper()
	data := filepath.Join(r.Dir, "docker/registry/v2/blobs/sha256", sum[:2], sum, "data")
	b, err := os.ReadFile(data)
	if err != nil {
		r.t.Fatal(err)
	}
	b[0] ^= 1
	if err := os.WriteFile(data, b, 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// Kill stops the registry at once (SIGKILL: connections drop mid-transfer).
func (r *Registry) Kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
	r.cmd = nil
}

// Restart starts the registry (again) on the same port and storage and
// waits until it answers.
func (r *Registry) Restart() {
	r.t.Helper()
	r.Kill()
	r.mu.Lock()
	defer r.mu.Unlock()
	cmd := exec.Command(Binary, "serve", r.conf)
	if r.log == nil {
		r.log = &logTail{} // kept across restarts: Requests counts them all
	}
	cmd.Stdout, cmd.Stderr = r.log, r.log
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("%s: %v", Binary, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	r.cmd, r.done = cmd, done
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + r.Addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			return
		}
		select {
		case <-done:
			r.t.Fatalf("%s exited at start:\n%s", Binary, r.log)
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s does not answer on %s: %v\n%s", Binary, r.Addr, err, r.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Requests returns the access log lines (method and path of each request
// the registry served since Start) that contain substr.
func (r *Registry) Requests(substr string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	// The registry logs a request after answering it: wait until the
	// log is still for a moment.
	log := r.log.String()
	for {
		time.Sleep(100 * time.Millisecond)
		now := r.log.String()
		if now == log {
			break
		}
		log = now
	}
	var out []string
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		// Access log lines: `IP - - [date] "GET /v2/... HTTP/1.1" 200 ...`.
		_, req, ok := strings.Cut(sc.Text(), `"`)
		if !ok {
			continue
		}
		req, _, _ = strings.Cut(req, `"`)
		if strings.Contains(req, " /v2/") && strings.Contains(req, substr) {
			out = append(out, req)
		}
	}
	return out
}

// logTail keeps the registry's output.
type logTail struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
