package fstree

import (
	"io/fs"
	"testing"
	"testing/fstest"
	"time"
)

func TestFSPassesFstest(t *testing.T) {
	epoch := time.Unix(10, 0)
	tr := New(epoch)
	tr.MkdirAll("lib/modules/6.1/kernel", epoch)
	tr.Put("lib/modules/6.1/kernel/a.ko", NewFile(0o644, []byte("AAAA"), epoch))
	tr.Put("lib/modules/6.1/modules.builtin", NewFile(0o644, []byte("kernel/b.ko\n"), epoch))
	tr.Put("empty", NewFile(0o600, nil, epoch))
	if err := fstest.TestFS(tr.FS(), "lib/modules/6.1/kernel/a.ko", "lib/modules/6.1/modules.builtin", "empty"); err != nil {
		t.Fatal(err)
	}
	sub, err := fs.Sub(tr.FS(), "lib/modules/6.1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := fs.ReadFile(sub, "kernel/a.ko")
	if err != nil || string(b) != "AAAA" {
		t.Fatalf("ReadFile via Sub: %q %v", b, err)
	}
	if _, err := tr.FS().Open("../x"); err == nil {
		t.Fatal("invalid path accepted")
	}
}
