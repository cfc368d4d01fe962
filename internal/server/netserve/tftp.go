package netserve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"time"

	"pack.ag/tftp"
)

// TFTP serves Files read-only. Write requests are refused.
type TFTP struct {
	Files Files
	Log   *log.Logger
}

// ServeTFTP answers one read request and logs one line.
func (t *TFTP) ServeTFTP(r tftp.ReadRequest) {
	start := time.Now()
	name := r.Name()
	f, fi, err := t.Files.Open(name)
	if err != nil {
		code, why := tftp.ErrCodeFileNotFound, "file not found"
		switch {
		case errors.Is(err, ErrOutside), errors.Is(err, fs.ErrPermission):
			code, why = tftp.ErrCodeAccessViolation, "access violation"
		case !errors.Is(err, fs.ErrNotExist):
			code, why = tftp.ErrCodeNotDefined, "cannot read file"
		}
		r.WriteError(code, why)
		t.Log.Printf("tftp: %s RRQ %q: %s (%v)", r.Addr(), name, why, err)
		return
	}
	defer f.Close()
	r.WriteSize(fi.Size())
	// The first Write negotiates the options; without one (an empty
	// file) pack.ag/tftp never answers.
	_, err = r.Write(nil)
	var n int64
	if err == nil {
		n, err = io.Copy(r, f)
	}
	d := time.Since(start).Round(time.Millisecond)
	if err != nil {
		t.Log.Printf("tftp: %s RRQ %q: failed after %d of %d bytes in %v: %v", r.Addr(), name, n, fi.Size(), d, err)
		return
	}
	t.Log.Printf("tftp: %s RRQ %q: sent %d bytes in %v", r.Addr(), name, n, d)
}

// ReceiveTFTP refuses writes.
func (t *TFTP) ReceiveTFTP(w tftp.WriteRequest) {
	w.WriteError(tftp.ErrCodeAccessViolation, "read-only server")
	t.Log.Printf("tftp: %s WRQ %q: refused (read-only server)", w.Addr(), w.Name())
}

// Serve answers TFTP on conn until ctx ends, then closes conn.
func (t *TFTP) Serve(ctx context.Context, conn *net.UDPConn) error {
	s, err := tftp.NewServer(conn.LocalAddr().String())
	if err != nil {
		return err
	}
	s.ReadHandler(t)
	s.WriteHandler(t)
	done := make(chan error, 1)
	go func() { done <- s.Serve(conn) }()
	select {
	case err := <-done:
		return fmt.Errorf("tftp server on %s: %w", conn.LocalAddr(), err)
	case <-ctx.Done():
		// Serve polls its close channel every 500 ms.
		for !s.Connected() {
			time.Sleep(10 * time.Millisecond)
		}
		s.Close()
		<-done
		return nil
	}
}
