package builder

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/update"
)

// TestLoadNetbootKeys: the keys a signed netboot tree's initramfs gets
// are read and checked before anything is fetched, and cannot go into
// an initramfs the build does not make.
func TestLoadNetbootKeys(t *testing.T) {
	dir := t.TempDir()
	k, _ := update.GenerateKey(rand.Reader)
	good := filepath.Join(dir, "fleet.pub")
	os.WriteFile(good, []byte(k.Public().String()+"\n"), 0o644)
	bad := filepath.Join(dir, "bad.pub")
	os.WriteFile(bad, []byte("not a key\n"), 0o644)
	for _, c := range []struct {
		name string
		o    Options
		want string // "" = loaded
	}{
		{"none", Options{}, ""},
		{"key file", Options{NetbootKeys: good}, ""},
		{"missing", Options{NetbootKeys: filepath.Join(dir, "nope")}, "no such file"},
		{"not keys", Options{NetbootKeys: bad}, "public key file line 1"},
		{"given initramfs", Options{NetbootKeys: good, Initramfs: "initrd.img"}, "not into a given --initramfs initrd.img"},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := &inputs{}
			err := in.loadNetbootKeys(&c.o)
			if c.want != "" {
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("error %v, want %q", err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.o.NetbootKeys != "" && (len(in.netbootPub) != 1 || !update.SameKey(in.netbootPub[0], k.Public()) || !strings.Contains(string(in.netbootKeys), k.Public().String())) {
				t.Errorf("loaded %v / %q", in.netbootPub, in.netbootKeys)
			}
			if c.o.NetbootKeys == "" && in.netbootKeys != nil {
				t.Error("keys loaded without a key file")
			}
		})
	}
}
