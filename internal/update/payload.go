package update

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
)

// NewPayloadReader returns a reader of p's bytes from r that checks them
// as they stream, so a node can verify a download while it writes it
// (and stop the moment it goes wrong): a read fails as soon as more than
// p.Size bytes arrive, and the end of r is reported (io.EOF) only when
// exactly p.Size bytes with sha256 p.SHA256 came; otherwise the last read
// fails with an error wrapping ErrInvalid. Whoever consumes the bytes
// must treat them as untrusted until that io.EOF.
func NewPayloadReader(r io.Reader, p Payload) io.Reader {
	return &payloadReader{r: r, p: p, h: sha256.New()}
}

type payloadReader struct {
	r   io.Reader
	p   Payload
	h   hash.Hash
	n   int64
	err error // sticky: once failed, always failed
}

func (pr *payloadReader) Read(b []byte) (int, error) {
	if pr.err != nil {
		return 0, pr.err
	}
	// Ask for at most one byte past the declared size: enough to see
	// that more is coming without taking it in.
	if max := pr.p.Size - pr.n + 1; int64(len(b)) > max {
		b = b[:max]
	}
	n, err := pr.r.Read(b)
	if pr.n+int64(n) > pr.p.Size {
		n = int(pr.p.Size - pr.n)
		pr.err = fmt.Errorf("%w: payload %s: more than the %d bytes %s gives", ErrInvalid, pr.p.Name, pr.p.Size, ManifestFile)
	}
	pr.h.Write(b[:n])
	pr.n += int64(n)
	switch {
	case pr.err != nil:
	case err == io.EOF && pr.n != pr.p.Size:
		pr.err = fmt.Errorf("%w: payload %s: %d bytes, %s gives %d (cut short; fetch it again)", ErrInvalid, pr.p.Name, pr.n, ManifestFile, pr.p.Size)
	case err == io.EOF:
		if sum := hex.EncodeToString(pr.h.Sum(nil)); sum != pr.p.SHA256 {
			pr.err = fmt.Errorf("%w: payload %s: sha256 %s, %s gives %s (corrupted or changed)", ErrInvalid, pr.p.Name, sum, ManifestFile, pr.p.SHA256)
		} else {
			pr.err = io.EOF
		}
	case err != nil:
		pr.err = fmt.Errorf("payload %s: %w", pr.p.Name, err)
	}
	if pr.err != nil {
		return n, pr.err
	}
	return n, nil
}
