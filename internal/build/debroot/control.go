package debroot

import (
	"archive/tar"
	"io"
	"strings"

	"github.com/mkimage/mkimage/internal/build/deb"
)

// debFiles is what dpkg keeps of a package besides its data: the
// control archive's files (control, md5sums, conffiles, maintainer
// scripts, triggers, ...) with their modes.
type debFiles struct {
	files map[string][]byte
	modes map[string]int64
}

// readControlFiles reads every regular file of control.tar.*.
func readControlFiles(path string) (*debFiles, error) {
	pkg, err := deb.Open(path)
	if err != nil {
		return nil, err
	}
	out := &debFiles{files: map[string][]byte{}, modes: map[string]int64{}}
	err = pkg.ControlFiles(func(h *tar.Header, r io.Reader) error {
		name := strings.TrimPrefix(h.Name, "./")
		if h.Typeflag != tar.TypeReg || name == "" || strings.Contains(name, "/") {
			return nil
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		out.files[name] = b
		out.modes[name] = h.Mode
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
