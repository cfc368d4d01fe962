package fat

import (
	"io"
	"os"
	"path"
	"testing"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
)

// TestGoDiskfsReadsOurs: a second, independent reader (go-diskfs) lists
// the same files with the same bytes.
func TestGoDiskfsReadsOurs(t *testing.T) {
	g := mustGeom(t, DefaultSize)
	tr := sampleTree(t, int(g.clusterBytes()))
	img, _ := writeImage(t, tr, Options{VolumeID: 9})
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fs, err := fat32.Read(file.New(f, true), DefaultSize, 0, 512)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]byte{}
	var walk func(dir string)
	walk = func(dir string) {
		d := dir
		if d == "" {
			d = "." // go-diskfs takes io/fs paths here
		}
		ents, err := fs.ReadDir(d)
		if err != nil {
			t.Fatalf("ReadDir /%s: %v", dir, err)
		}
		for _, e := range ents {
			p := path.Join(dir, e.Name())
			if e.IsDir() {
				got[p+"/"] = nil
				walk(p)
				continue
			}
			if fi, err := e.Info(); err == nil && fi.Size() == 0 {
				// Empty files have first cluster 0 (FAT spec, as Linux
				// writes them); go-diskfs v1.9.4 refuses to open those.
				got[p] = []byte{}
				continue
			}
			r, err := fs.OpenFile("/"+p, os.O_RDONLY)
			if err != nil {
				t.Fatalf("open /%s: %v", p, err)
			}
			b, err := io.ReadAll(r)
			if err != nil {
				t.Fatalf("read /%s: %v", p, err)
			}
			got[p] = b
		}
	}
	walk("")
	compareFiles(t, "go-diskfs", got, treeFiles(t, tr))
}
