package e2e

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// corpusEntry is one entry of the QEMU read-back corpus with what the
// guest must report for it.
type corpusEntry struct {
	tarEntry
	links int // expected link count
}

// corpus returns tar entries of every kind the native btrfs writer
// handles, under corpus/, with exact owners, modes and nanosecond times.
func corpus() []corpusEntry {
	var out []corpusEntry
	mt := time.Unix(1600000000, 987654321)
	add := func(h tar.Header, data []byte, links int) {
		h.Name = "corpus/" + h.Name
		if h.Typeflag == tar.TypeLink {
			h.Linkname = "corpus/" + h.Linkname
		}
		h.ModTime, h.AccessTime, h.ChangeTime = mt, mt, mt
		h.Format = tar.FormatPAX
		mt = mt.Add(1001 * time.Nanosecond)
		out = append(out, corpusEntry{tarEntry{h: h, data: data}, links})
	}
	add(tar.Header{Name: "", Typeflag: tar.TypeDir, Mode: 0o755}, nil, 1)
	fill := func(n int, seed byte) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7) ^ seed
		}
		return b
	}
	// Inline boundaries (4095 inline, 4096 regular), empty, large.
	for i, n := range []int{0, 1, 2047, 2048, 2049, 4095, 4096, 4097, 8193, 200 << 10} {
		add(tar.Header{Name: fmt.Sprintf("size-%d", n), Typeflag: tar.TypeReg, Mode: 0o644, Uid: 1000 + i, Gid: 2000 + i}, fill(n, byte(i)), 1)
	}
	// A mostly empty file: zero blocks become holes.
	sparse := make([]byte, 4<<20)
	copy(sparse, "head")
	copy(sparse[len(sparse)-4:], "tail")
	add(tar.Header{Name: "sparse", Typeflag: tar.TypeReg, Mode: 0o600}, sparse, 1)
	add(tar.Header{Name: "setuid", Typeflag: tar.TypeReg, Mode: 0o4755}, []byte("#!/bin/sh\n"), 1)
	add(tar.Header{Name: "sticky/", Typeflag: tar.TypeDir, Mode: 0o1777}, nil, 1)
	// Hard links: 11 names, across directories.
	add(tar.Header{Name: "links/", Typeflag: tar.TypeDir, Mode: 0o755}, nil, 1)
	add(tar.Header{Name: "links/a/", Typeflag: tar.TypeDir, Mode: 0o755}, nil, 1)
	add(tar.Header{Name: "links/h0", Typeflag: tar.TypeReg, Mode: 0o640}, []byte("eleven names"), 11)
	for i := 1; i < 11; i++ {
		dir := "links/"
		if i%2 == 0 {
			dir = "links/a/"
		}
		add(tar.Header{Name: fmt.Sprintf("%sh%d", dir, i), Typeflag: tar.TypeLink, Linkname: "links/h0"}, nil, 11)
	}
	add(tar.Header{Name: "dev/", Typeflag: tar.TypeDir, Mode: 0o755}, nil, 1)
	add(tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}, nil, 1)
	add(tar.Header{Name: "dev/big", Typeflag: tar.TypeBlock, Mode: 0o660, Gid: 6, Devmajor: 259, Devminor: 70000}, nil, 1)
	add(tar.Header{Name: "fifo", Typeflag: tar.TypeFifo, Mode: 0o620}, nil, 1)
	add(tar.Header{Name: "symlink", Typeflag: tar.TypeSymlink, Linkname: "size-1"}, nil, 1)
	add(tar.Header{Name: "dangling", Typeflag: tar.TypeSymlink, Linkname: "/nowhere/at/all"}, nil, 1)
	// Long and unicode names, deep directories.
	add(tar.Header{Name: strings.Repeat("n", 255), Typeflag: tar.TypeReg, Mode: 0o644}, []byte("long"), 1)
	add(tar.Header{Name: "ünïcødé-名前-🙂", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("utf8"), 1)
	deep := ""
	for i := 0; i < 40; i++ {
		deep += fmt.Sprintf("d%d/", i)
		add(tar.Header{Name: deep, Typeflag: tar.TypeDir, Mode: 0o750}, nil, 1)
	}
	add(tar.Header{Name: deep + "bottom", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("deep"), 1)
	return out
}

// expectedLine is what the guest's stat prints for e: name|mode hex|uid|
// gid|size|links|major hex|minor hex|mtime with nanoseconds.
func expectedLine(e corpusEntry) string {
	h := e.h
	name := strings.TrimSuffix("/"+h.Name, "/")
	mode := uint32(h.Mode & 0o7777)
	size := int64(len(e.data))
	var maj, min int64
	switch h.Typeflag {
	case tar.TypeDir:
		mode |= 0o040000
		size = -1 // directory sizes are the filesystem's business
	case tar.TypeReg, tar.TypeLink:
		mode |= 0o100000
	case tar.TypeSymlink:
		mode = 0o120777
		size = int64(len(h.Linkname))
	case tar.TypeChar:
		mode |= 0o020000
		maj, min = h.Devmajor, h.Devminor
	case tar.TypeBlock:
		mode |= 0o060000
		maj, min = h.Devmajor, h.Devminor
	case tar.TypeFifo:
		mode |= 0o010000
	}
	sz := fmt.Sprint(size)
	if size < 0 {
		sz = "*"
	}
	return fmt.Sprintf("%s|%x|%d|%d|%s|%d|%x|%x|%s", name, mode, h.Uid, h.Gid, sz, e.links, maj, min,
		h.ModTime.UTC().Format("2006-01-02 15:04:05.000000000"))
}

// TestBtrfsReadBackInQEMU: the kernel of a booted node reads the native
// writer's filesystem back equal to the source: types, modes, owners,
// sizes, link counts, device numbers, nanosecond mtimes and content.
func TestBtrfsReadBackInQEMU(t *testing.T) {
	needQEMU(t)
	dir := t.TempDir()
	entries := corpus()
	// Links to the first name must follow the named inode in the
	// tarball; expected link targets resolve to the real entry.
	var plain []tarEntry
	byName := map[string]corpusEntry{}
	for _, e := range entries {
		plain = append(plain, e.tarEntry)
		byName[e.h.Name] = e
	}
	tarPath := writeTar(t, filepath.Join(dir, "corpus.tar"), plain...)

	script := `echo CORPUS-BEGIN
cd /
find /corpus | while read -r f; do stat -c '%n|%f|%u|%g|%s|%h|%t|%T|%y' "$f"; done
find /corpus -type f | while read -r f; do sha256sum "$f"; done
find /corpus -type l | while read -r f; do echo "link $f -> $(readlink "$f")"; done
echo CORPUS-END`
	img := filepath.Join(dir, "corpus.img")
	mustRun(t, "--board", "qemu-virt", "--rootfs", "minimal", "-o", img, "-q", "--overlay", tarPath, "--overlay", markerOverlay(t, script))
	log := qemu(t, img, "CORPUS-END")
	begin := strings.LastIndex(log, "CORPUS-BEGIN")
	end := strings.LastIndex(log, "CORPUS-END")
	if begin < 0 || end < begin {
		t.Fatalf("no corpus report on the console")
	}
	got := map[string]string{}
	for _, l := range strings.Split(log[begin:end], "\n") {
		l = strings.TrimRight(l, "\r")
		switch {
		case strings.HasPrefix(l, "/corpus"):
			name := strings.SplitN(l, "|", 2)[0]
			got["stat "+name] = l
		case strings.HasPrefix(l, "link "):
			got[strings.SplitN(l, " -> ", 2)[0]] = l
		case len(l) > 66 && l[64:66] == "  ":
			got["sum "+l[66:]] = l[:64]
		}
	}
	var problems []string
	for _, e := range entries {
		name := strings.TrimSuffix("/"+e.h.Name, "/")
		inode := e
		if e.h.Typeflag == tar.TypeLink {
			// A further name of an inode: its metadata is the target's.
			inode = byName[e.h.Linkname]
			inode.h.Name = e.h.Name
		}
		want := expectedLine(inode)
		line, ok := got["stat "+name]
		if !ok {
			problems = append(problems, "missing in the guest: "+name)
			continue
		}
		// busybox stat prints "%y" as "YYYY-MM-DD hh:mm:ss.nnnnnnnnn +zzzz".
		line = strings.TrimSuffix(line, " +0000")
		if strings.Contains(want, "|*|") {
			parts := strings.Split(line, "|")
			parts[4] = "*"
			line = strings.Join(parts, "|")
		}
		if line != want {
			problems = append(problems, fmt.Sprintf("%s:\n  guest %s\n  want  %s", name, line, want))
		}
		switch e.h.Typeflag {
		case tar.TypeReg, tar.TypeLink:
			data := e.data
			if e.h.Typeflag == tar.TypeLink {
				data = byName[e.h.Linkname].data
			}
			sum := sha256.Sum256(data)
			if got["sum "+name] != hex.EncodeToString(sum[:]) {
				problems = append(problems, fmt.Sprintf("%s: content sha256 %q, want %x", name, got["sum "+name], sum))
			}
		case tar.TypeSymlink:
			if w := "link " + name + " -> " + e.h.Linkname; got["link "+name] != w {
				problems = append(problems, fmt.Sprintf("%s: %q, want %q", name, got["link "+name], w))
			}
		}
	}
	if n := len(got); n == 0 {
		problems = append(problems, "guest reported nothing")
	}
	sort.Strings(problems)
	if len(problems) > 0 {
		t.Fatalf("%d differences between the source and what the guest kernel reads:\n%s", len(problems), strings.Join(problems, "\n"))
	}
}
