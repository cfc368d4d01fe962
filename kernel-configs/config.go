package kernelconfig

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mkimage/mkimage/internal/compress"
)

// Config is a kernel .config: symbol (without CONFIG_) to value, "n" for
// "is not set". A symbol absent from the map is unset or unknown.
type Config map[string]string

// ParseConfig reads a .config, plain or gzip-compressed (/proc/config.gz).
func ParseConfig(name string, r io.Reader) (Config, error) {
	zr, _, err := compress.Open(r)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", name, err)
	}
	defer zr.Close()
	br := bufio.NewReader(zr)
	c := Config{}
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if m := unsetRE.FindStringSubmatch(line); m != nil {
			c[m[1]] = "n"
		} else if m := setRE.FindStringSubmatch(line); m != nil {
			c[m[1]] = m[2]
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("config %s: %w", name, err)
	}
	if len(c) == 0 {
		return nil, fmt.Errorf("config %s: no CONFIG_ lines; is it a kernel .config?", name)
	}
	return c, nil
}

// ReadConfigFile reads a .config or config.gz from disk.
func ReadConfigFile(file string) (Config, error) {
	fh, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer fh.Close()
	return ParseConfig(file, fh)
}

// Get returns the value of sym with "n" for unset or absent.
func (c Config) Get(sym string) string {
	if v, ok := c[sym]; ok {
		return v
	}
	return "n"
}
