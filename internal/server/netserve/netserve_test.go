package netserve

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"pack.ag/tftp"
)

// tree makes a served directory with a secret beside it and links that
// try to lead out.
func tree(t *testing.T) (dir string, big []byte) {
	t.Helper()
	base := t.TempDir()
	dir = filepath.Join(base, "srv")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "pxelinux.cfg"), 0o755))
	must(os.WriteFile(filepath.Join(base, "secret"), []byte("outside"), 0o644))
	big = make([]byte, 3<<20+123) // not a multiple of any block size
	for i := range big {
		big[i] = byte(i * 7 / 3)
	}
	must(os.WriteFile(filepath.Join(dir, "Image"), big, 0o644))
	must(os.WriteFile(filepath.Join(dir, "pxelinux.cfg", "default"), []byte("default x\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "empty"), nil, 0o644))
	must(os.Symlink("../secret", filepath.Join(dir, "rel-out")))
	must(os.Symlink(filepath.Join(base, "secret"), filepath.Join(dir, "abs-out")))
	must(os.Symlink("pxelinux.cfg/default", filepath.Join(dir, "inside")))
	must(syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	return dir, big
}

type lineLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, strings.TrimSpace(string(p)))
	return len(p), nil
}

// has reports whether a line holding sub was logged, waiting up to 5 s
// for it: a server logs a request after answering it, so the client can
// be done before the line is written (seen on a loaded CI machine).
func (l *lineLog) has(sub string) bool {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		l.mu.Lock()
		for _, s := range l.lines {
			if strings.Contains(s, sub) {
				l.mu.Unlock()
				return true
			}
		}
		l.mu.Unlock()
		if time.Now().After(deadline) {
			return false
		}
	}
}

func startTFTP(t *testing.T, dir string) (string, *lineLog) {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ll := &lineLog{}
	srv := &TFTP{Files: Files{Dir: dir}, Log: log.New(ll, "", 0)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, conn) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("tftp serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("tftp server did not stop within 5 s")
		}
	})
	return conn.LocalAddr().String(), ll
}

func tftpGet(addr, name string, opts ...tftp.ClientOpt) ([]byte, int64, error) {
	c, err := tftp.NewClient(append([]tftp.ClientOpt{tftp.ClientTimeout(1), tftp.ClientRetransmit(2)}, opts...)...)
	if err != nil {
		return nil, 0, err
	}
	resp, err := c.Get("tftp://" + addr + "/" + name)
	if err != nil {
		return nil, 0, err
	}
	size, _ := resp.Size()
	data, err := io.ReadAll(resp)
	return data, size, err
}

func TestTFTP(t *testing.T) {
	dir, big := tree(t)
	addr, ll := startTFTP(t, dir)
	for _, c := range []struct {
		name    string
		file    string
		opts    []tftp.ClientOpt
		want    []byte
		wantErr string
	}{
		{"plain 512-byte blocks", "Image", nil, big, ""},
		{"blksize 1468 (U-Boot) and tsize", "Image", []tftp.ClientOpt{tftp.ClientBlocksize(1468), tftp.ClientTransferSize(true)}, big, ""},
		// What the netboot tree's boot script has U-Boot ask for.
		{"blksize 1468 windowsize 16 (netboot script)", "Image", []tftp.ClientOpt{tftp.ClientBlocksize(1468), tftp.ClientWindowsize(16), tftp.ClientTransferSize(true)}, big, ""},
		{"blksize 8192 windowsize 4", "Image", []tftp.ClientOpt{tftp.ClientBlocksize(8192), tftp.ClientWindowsize(4), tftp.ClientTransferSize(true)}, big, ""},
		{"subdirectory", "pxelinux.cfg/default", []tftp.ClientOpt{tftp.ClientTransferSize(true)}, []byte("default x\n"), ""},
		{"leading slash is the served directory", "/pxelinux.cfg/default", nil, []byte("default x\n"), ""},
		{"symlink inside", "inside", nil, []byte("default x\n"), ""},
		{"empty file", "empty", []tftp.ClientOpt{tftp.ClientTransferSize(true)}, []byte{}, ""},
		{"missing", "pxelinux.cfg/01-aa-bb-cc-dd-ee-ff", nil, nil, "file not found"},
		{"dot-dot", "../secret", nil, nil, "access violation"},
		{"dot-dot inside", "pxelinux.cfg/../../secret", nil, nil, "access violation"},
		{"absolute host path", "/" + filepath.Join(filepath.Dir(dir), "secret"), nil, nil, "file not found"},
		{"relative symlink out", "rel-out", nil, nil, "access violation"},
		{"absolute symlink out", "abs-out", nil, nil, "access violation"},
		{"directory", "pxelinux.cfg", nil, nil, "access violation"},
		{"fifo", "fifo", nil, nil, "access violation"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, size, err := tftpGet(addr, c.file, c.opts...)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("got %d bytes, error %v; want error %q", len(got), err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, c.want) {
				t.Fatalf("got %d bytes, want %d", len(got), len(c.want))
			}
			// Every case with options asks for tsize.
			if len(c.opts) > 0 && size != int64(len(c.want)) {
				t.Errorf("tsize %d, want %d", size, len(c.want))
			}
		})
	}
	// Writes are refused.
	cl, _ := tftp.NewClient(tftp.ClientTimeout(1), tftp.ClientRetransmit(2))
	if err := cl.Put("tftp://"+addr+"/new", strings.NewReader("x"), 1); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("put: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); err == nil {
		t.Error("a write request created a file")
	}
	for _, want := range []string{`RRQ "Image": sent 3145851 bytes`, `RRQ "../secret": access violation`, `WRQ "new": refused`} {
		if !ll.has(want) {
			t.Errorf("log lacks %q:\n%s", want, strings.Join(ll.lines, "\n"))
		}
	}
}

func TestTFTPManyClients(t *testing.T) {
	dir, big := tree(t)
	addr, _ := startTFTP(t, dir)
	want := sha256.Sum256(big)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, _, err := tftpGet(addr, "Image", tftp.ClientBlocksize(1468))
			if err == nil && sha256.Sum256(got) != want {
				err = fmt.Errorf("client %d: wrong content (%d bytes)", i, len(got))
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func startHTTP(t *testing.T, dir string) (string, *lineLog) {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ll := &lineLog{}
	srv := &HTTP{Files: Files{Dir: dir}, Log: log.New(ll, "", 0)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("http server did not stop")
		}
	})
	return l.Addr().String(), ll
}

// rawGet sends a request line as written (Go's client would clean it).
func rawGet(t *testing.T, addr, method, target string, hdr ...string) (int, []byte) {
	t.Helper()
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n", method, target)
	for _, h := range hdr {
		fmt.Fprintf(c, "%s\r\n", h)
	}
	fmt.Fprintf(c, "\r\n")
	c.SetDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func TestHTTP(t *testing.T) {
	dir, big := tree(t)
	addr, ll := startHTTP(t, dir)
	for _, c := range []struct {
		name, method, target string
		hdr                  []string
		status               int
		body                 []byte
	}{
		{"whole file", "GET", "/Image", nil, 200, big},
		{"range", "GET", "/Image", []string{"Range: bytes=4096-8191"}, 206, big[4096:8192]},
		{"head", "HEAD", "/Image", nil, 200, []byte{}},
		{"subdirectory", "GET", "/pxelinux.cfg/default", nil, 200, []byte("default x\n")},
		{"symlink inside", "GET", "/inside", nil, 200, []byte("default x\n")},
		{"missing", "GET", "/nope", nil, 404, nil},
		{"dot-dot", "GET", "/../secret", nil, 403, nil},
		{"encoded dot-dot", "GET", "/%2e%2e/secret", nil, 403, nil},
		{"dot-dot inside", "GET", "/pxelinux.cfg/../../secret", nil, 403, nil},
		{"absolute host path", "GET", "/" + filepath.Join(filepath.Dir(dir), "secret"), nil, 404, nil},
		{"relative symlink out", "GET", "/rel-out", nil, 403, nil},
		{"absolute symlink out", "GET", "/abs-out", nil, 403, nil},
		{"directory", "GET", "/pxelinux.cfg/", nil, 403, nil},
		{"fifo", "GET", "/fifo", nil, 403, nil},
		{"put", "PUT", "/Image", nil, 405, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body := rawGet(t, addr, c.method, c.target, c.hdr...)
			if status != c.status {
				t.Fatalf("status %d, want %d (%q)", status, c.status, body)
			}
			if c.body != nil && !bytes.Equal(body, c.body) {
				t.Fatalf("body %d bytes, want %d", len(body), len(c.body))
			}
			if bytes.Contains(body, []byte("outside")) {
				t.Fatal("served the file outside the directory")
			}
		})
	}
	if !ll.has(`GET "/Image" bytes=4096-8191: 206, 4096 bytes`) || !ll.has(`GET "/../secret": 403`) {
		t.Errorf("log:\n%s", strings.Join(ll.lines, "\n"))
	}
}

func TestCleanName(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"Image", "Image"}, {"/Image", "Image"}, {"//a//b/", "a/b"}, {"a/./b", "a/b"},
		{"", "."}, {"/", "."}, {`pxelinux.cfg\default`, "pxelinux.cfg/default"},
		{"..", ""}, {"a/../../b", ""}, {`..\x`, ""}, {"a\x00b", ""},
	} {
		got, err := cleanName(c.in)
		if c.want == "" {
			if err == nil {
				t.Errorf("cleanName(%q) = %q, want an error", c.in, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("cleanName(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}
