package sendstream

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/build/sendstream/sendstreamtest"
	"github.com/mkimage/mkimage/internal/fstree"
	"github.com/mkimage/mkimage/internal/fstree/fstreetest"
	"github.com/mkimage/mkimage/internal/testenv"
)

// readFull reads stream with the default limits and fails t on an error.
func readFull(t testing.TB, stream []byte) (*fstree.Tree, Options) {
	t.Helper()
	tr, o, err := ReadFull(bytes.NewReader(stream), Limits{})
	if err != nil {
		t.Fatalf("ReadFull: %v", err)
	}
	return tr, o
}

// namedTree is a tree a test case starts from.
type namedTree struct {
	name string
	tree *fstree.Tree
}

// roundTrips are the trees the writer's tests build, and a few more
// contents: each is written, read back and written again.
func roundTrips(t testing.TB) []namedTree {
	cases := []namedTree{{"empty", fstree.New(epoch)}, {"base", baseTree(t)}}
	for _, c := range changes {
		cases = append(cases, namedTree{"change " + c.name, c.child(t)})
	}
	// Generated content, zero times, and data runs that end where a
	// write chunk does.
	gen := fstree.New(time.Time{})
	put(t, gen, "random", &fstree.Inode{Mode: fstree.ModeRegular | 0o644, Content: fstreetest.Random(5, 3*WriteChunk+7)})
	put(t, gen, "chunks", &fstree.Inode{Mode: fstree.ModeRegular | 0o644, Content: fstreetest.Sparse(5*WriteChunk, 6,
		fstree.Extent{Offset: 0, Length: WriteChunk}, fstree.Extent{Offset: 2 * WriteChunk, Length: 2 * WriteChunk})})
	put(t, gen, "zero", fstree.NewFile(0o644, make([]byte, 2*WriteChunk+1), time.Time{}))
	put(t, gen, "d/empty-dir", &fstree.Inode{Mode: fstree.ModeDir | 0o755, Children: map[string]*fstree.Inode{}})
	return append(cases, namedTree{"generated", gen})
}

// TestReadFullRoundTrip: WriteFull then ReadFull gives the tree back
// (zero times as the epoch), with the same hash, and writing what was
// read gives the same stream.
func TestReadFullRoundTrip(t *testing.T) {
	for i, c := range roundTrips(t) {
		t.Run(c.name, func(t *testing.T) {
			o := Options{Name: subvolName(c.name), UUID: [16]byte{0x5e, byte(i)}, CTransid: uint64(100 + i)}
			stream := full(t, c.tree, o)
			got, gotOpts := readFull(t, stream)
			if gotOpts != o {
				t.Errorf("options %+v, want %+v", gotOpts, o)
			}
			want := fstreetest.EpochTimes(c.tree)
			sendstreamtest.SameTree(t, want, got, fstree.DiffOptions{}, "what ReadFull read")
			wh, err := want.Hash()
			if err != nil {
				t.Fatal(err)
			}
			if gh, err := got.Hash(); err != nil || gh != wh {
				t.Errorf("hash %s, %v; want %s", gh, err, wh)
			}
			if again := full(t, got, gotOpts); !bytes.Equal(again, stream) {
				t.Errorf("writing the tree read gives %d bytes that differ from the %d read", len(again), len(stream))
			}
		})
	}
}

// tcmd is one command of a hand-made stream.
type tcmd struct {
	cmd   uint16
	attrs []tattr
}

type tattr struct {
	typ uint16
	b   []byte
}

func str(typ uint16, v string) tattr { return tattr{typ, []byte(v)} }
func num(typ uint16, v uint64) tattr { return tattr{typ, binary.LittleEndian.AppendUint64(nil, v)} }

func stamp(typ uint16, sec uint64, nsec uint32) tattr {
	return tattr{typ, binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint64(nil, sec), nsec)}
}

// on is command cmd on path p.
func on(cmd uint16, p string, attrs ...tattr) tcmd {
	return tcmd{cmd, append([]tattr{str(attrPath, p)}, attrs...)}
}

var (
	handUUID = [16]byte{0x4a, 0x4d}
	subvolV  = tcmd{cmdSubvol, []tattr{str(attrPath, "v"), {attrUUID, handUUID[:]}, num(attrCtransid, 5)}}
	endCmd   = tcmd{cmd: cmdEnd}
)

// encode writes a header and cmds as given, framing and crc included.
func encode(t testing.TB, cmds ...tcmd) []byte {
	t.Helper()
	var b bytes.Buffer
	e := encoder{w: &b}
	if err := e.header(); err != nil {
		t.Fatal(err)
	}
	for _, c := range cmds {
		e.begin(c.cmd)
		for _, a := range c.attrs {
			e.bytes(a.typ, a.b)
		}
		if err := e.end(); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// hand is a whole stream: subvol v, cmds, end.
func hand(t testing.TB, cmds ...tcmd) []byte {
	t.Helper()
	return encode(t, append(append([]tcmd{subvolV}, cmds...), endCmd)...)
}

// cloneOf clones n bytes of src at srcOff to p at off, within subvol v.
func cloneOf(p string, off uint64, src string, srcOff, n uint64) tcmd {
	return on(cmdClone, p, num(attrFileOffset, off), num(attrCloneLen, n), str(attrClonePath, src),
		num(attrCloneOffset, srcOff), tattr{attrCloneUUID, handUUID[:]}, num(attrCloneCtransid, 5))
}

// cap20 is a file capability (version 2, cap_net_raw).
var cap20 = []byte{1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

// commandsStream holds what WriteFull never sends: temporary names
// renamed into place, as the kernel sends them, clones, unlink, rmdir,
// remove_xattr, and what receive's chown, write and truncate take away.
func commandsStream(t testing.TB) []byte {
	return hand(t,
		on(cmdMkdir, "o257-7-0"),
		on(cmdMkdir, "o258-7-0"),
		on(cmdRename, "o257-7-0", str(attrPathTo, "o258-7-0/a")),
		on(cmdRename, "o258-7-0", str(attrPathTo, "b")),
		on(cmdMkfile, "o259-7-0"),
		on(cmdRename, "o259-7-0", str(attrPathTo, "b/a/f")),
		on(cmdWrite, "b/a/f", num(attrFileOffset, 0), str(attrData, "0123456789")),
		on(cmdLink, "hl", str(attrPathLink, "b/a/f")),
		// The kernel's order: owner, mode, then the capability.
		on(cmdChown, "hl", num(attrUid, 5), num(attrGid, 6)),
		on(cmdChmod, "hl", num(attrMode, 0o6755)),
		on(cmdSetXattr, "hl", str(attrXattrName, capability), tattr{attrXattrData, cap20}),
		// A later chown drops setuid, setgid and the capability ...
		on(cmdMkfile, "suid"),
		on(cmdChmod, "suid", num(attrMode, 0o6755)),
		on(cmdSetXattr, "suid", str(attrXattrName, capability), tattr{attrXattrData, cap20}),
		on(cmdChown, "suid", num(attrUid, 1), num(attrGid, 1)),
		// ... setgid stays without group execute, and on a directory.
		on(cmdMkfile, "sgid"),
		on(cmdChmod, "sgid", num(attrMode, 0o2640)),
		on(cmdChown, "sgid", num(attrUid, 1), num(attrGid, 1)),
		on(cmdChmod, "b", num(attrMode, 0o2775)),
		on(cmdSetXattr, "b", str(attrXattrName, capability), tattr{attrXattrData, cap20}),
		on(cmdChown, "b", num(attrUid, 1), num(attrGid, 1)),
		// A write or a truncate drops the capability.
		on(cmdMkfile, "w"),
		on(cmdSetXattr, "w", str(attrXattrName, capability), tattr{attrXattrData, cap20}),
		on(cmdTruncate, "w", num(attrSize, 3)),
		// Clones: from another file and from the file itself, holes
		// staying holes.
		on(cmdMkfile, "c"),
		cloneOf("c", 100, "b/a/f", 2, 5),
		cloneOf("c", 200, "c", 98, 6),
		// Gone again.
		on(cmdMkfile, "tmp"),
		on(cmdUnlink, "tmp"),
		on(cmdMkdir, "tmpdir"),
		on(cmdRmdir, "tmpdir"),
		on(cmdSetXattr, "c", str(attrXattrName, "user.x"), str(attrXattrData, "x")),
		on(cmdRemoveXattr, "c", str(attrXattrName, "user.x")),
		// Rename over a file, and over another name of the same inode.
		on(cmdSymlink, "s1", str(attrPathLink, "one")),
		on(cmdSymlink, "s2", str(attrPathLink, "two")),
		on(cmdRename, "s2", str(attrPathTo, "s1")),
		on(cmdRename, "hl", str(attrPathTo, "b/a/f")),
		on(cmdUtimes, "b/a/f", stamp(attrAtime, 1, 2), stamp(attrMtime, 3, 4), stamp(attrCtime, 5, 6)),
	)
}

// TestReadFullCommands reads commandsStream.
func TestReadFullCommands(t *testing.T) {
	got, o := readFull(t, commandsStream(t))
	if o != (Options{Name: "v", UUID: handUUID, CTransid: 5}) {
		t.Errorf("options %+v", o)
	}
	want := fstree.New(noTime)
	want.Root.Mode = fstree.ModeDir | 0o755
	b := fstree.NewDir(0o2775, noTime)
	b.Uid, b.Gid = 1, 1
	b.Xattrs = map[string][]byte{capability: cap20}
	put(t, want, "b", b)
	put(t, want, "b/a", fstree.NewDir(0o700, noTime))
	f := fstree.NewFile(0o6755, []byte("0123456789"), time.Unix(3, 4))
	f.Atime, f.Ctime = time.Unix(1, 2), time.Unix(5, 6)
	f.Uid, f.Gid = 5, 6
	f.Xattrs = map[string][]byte{capability: cap20}
	put(t, want, "b/a/f", f)
	put(t, want, "hl", f) // renamed over its other name: both stay
	suid := fstree.NewFile(0o0755, nil, noTime)
	suid.Uid, suid.Gid = 1, 1
	put(t, want, "suid", suid)
	sgid := fstree.NewFile(0o2640, nil, noTime)
	sgid.Uid, sgid.Gid = 1, 1
	put(t, want, "sgid", sgid)
	put(t, want, "w", fstree.NewFile(0o600, []byte{0, 0, 0}, noTime))
	c := make([]byte, 206)
	copy(c[100:], "23456")
	copy(c[200:], "\x00\x0023456"[:6])
	put(t, want, "c", fstree.NewFile(0o600, c, noTime))
	put(t, want, "s1", fstree.NewSymlink("two", noTime))
	sendstreamtest.SameTree(t, want, got, fstree.DiffOptions{}, "what ReadFull read")
	cs, ok := lookup(t, got, "c").Content.(fstree.Sparse)
	if !ok || fmt.Sprint(cs.Extents()) != "[{100 5} {202 4}]" {
		t.Errorf("c: content %T, extents %v: want the runs the clones sent, holes between", lookup(t, got, "c").Content, cs)
	}
}

// TestReadFullErrors: every refusal names the command, its number, the
// path and what is wrong.
func TestReadFullErrors(t *testing.T) {
	header := encode(t)
	valid := hand(t, on(cmdMkfile, "f"))
	badCrc := bytes.Clone(valid)
	badCrc[len(badCrc)-cmdHeader-3] ^= 1 // in the mkfile's path
	v2 := bytes.Clone(header)
	v2[13] = 2
	huge := binary.LittleEndian.AppendUint32(bytes.Clone(header), 1<<31)
	huge = append(huge, make([]byte, 6)...)
	inc := incremental(t, fstree.New(epoch), fstree.New(epoch), Options{Name: "v", ParentUUID: [16]byte{0xab}})
	symlinkDir := []tcmd{on(cmdMkdir, "d"), on(cmdSymlink, "l", str(attrPathLink, "/etc"))}
	file := []tcmd{on(cmdMkfile, "f")}
	for _, c := range []struct {
		name   string
		stream []byte
		lim    Limits
		want   string
	}{
		{"empty", nil, Limits{}, "send stream: reading the header: EOF"},
		{"bad magic", []byte("btrfs-streem\x00\x01\x00\x00\x00"), Limits{}, "not a btrfs send stream"},
		{"version 2", v2, Limits{}, "version 2: only version 1 is read"},
		{"crc", badCrc, Limits{}, "send stream: command 2 at byte 64: crc32c is"},
		{"huge command", huge, Limits{}, "claims 2147483648 bytes of attributes, more than a version 1 command holds (65526)"},
		{"cut short", valid[:len(valid)-cmdHeader], Limits{}, "ends after 2 commands without an end command"},
		{"cut in a command", valid[:len(valid)-cmdHeader-2], Limits{}, "command 2 at byte 64: reading 5 bytes of attributes: unexpected EOF"},
		{"trailing data", append(bytes.Clone(valid), valid...), Limits{}, "data after the end command at byte 89"},
		{"incremental", inc, Limits{}, "command 1 (snapshot \"/v\") at byte 17: an incremental stream (against parent ab000000000000000000000000000000): ReadFull needs a full stream"},
		{"before subvol", encode(t, on(cmdMkfile, "f")), Limits{}, "command 1 (mkfile \"/f\") at byte 17: before the subvol command"},
		{"second subvol", hand(t, subvolV), Limits{}, "a second subvolume"},
		{"bad name", encode(t, tcmd{cmdSubvol, []tattr{str(attrPath, "a/b"), {attrUUID, make([]byte, 16)}, num(attrCtransid, 1)}}), Limits{}, "invalid subvolume name"},
		{"unknown command", hand(t, tcmd{cmd: 99}), Limits{}, "command 2 (unknown command 99) at byte 64: not a command of stream version 1"},
		{"no data", hand(t, append(file, on(cmdUpdateExtent, "f", num(attrFileOffset, 0), num(attrSize, 3)))...), Limits{}, "(btrfs send --no-data)"},
		{"missing attribute", hand(t, append(file, on(cmdWrite, "f", num(attrFileOffset, 0)))...), Limits{}, "no data attribute"},
		{"short attribute", hand(t, on(cmdChown, "", tattr{attrUid, []byte{1}}, num(attrGid, 0))), Limits{}, "uid attribute is 1 bytes, not 8"},
		{"attribute twice", hand(t, on(cmdMkfile, "f", str(attrPath, "g"))), Limits{}, "path attribute at byte 15 of the command: given twice"},
		{"unknown attribute", hand(t, on(cmdMkfile, "f", str(40, ""))), Limits{}, "unknown type 40"},
		{"dot dot", hand(t, on(cmdMkfile, "../f")), Limits{}, `path "../f" leaves the subvolume`},
		{"deep dot dot", hand(t, append(symlinkDir, on(cmdMkfile, "d/../../f"))...), Limits{}, "leaves the subvolume"},
		{"absolute", hand(t, on(cmdMkfile, "/etc/passwd")), Limits{}, "is absolute"},
		{"empty name", hand(t, append(symlinkDir, on(cmdMkfile, "d//f"))...), Limits{}, "empty or . name"},
		{"trailing slash", hand(t, append(symlinkDir, on(cmdMkfile, "d/"))...), Limits{}, `path "d/" ends in /`},
		{"missing parent", hand(t, on(cmdMkfile, "a/b")), Limits{}, `"/a" does not exist`},
		{"through a symlink", hand(t, append(symlinkDir, on(cmdMkfile, "l/passwd"))...), Limits{}, `"/l" is a symlink, not a directory`},
		{"exists", hand(t, append(file, on(cmdMkdir, "f"))...), Limits{}, `"/f" exists already (a regular file)`},
		{"make the top", hand(t, on(cmdMkdir, "")), Limits{}, "top directory cannot be made"},
		{"empty symlink", hand(t, on(cmdSymlink, "l", str(attrPathLink, ""))), Limits{}, "empty target"},
		{"mknod of a fifo", hand(t, on(cmdMknod, "n", num(attrMode, fstree.ModeFIFO|0o644), num(attrRdev, 0))), Limits{}, "mode 010644 is not one mknod makes"},
		{"link to nothing", hand(t, on(cmdLink, "l", str(attrPathLink, "nope"))), Limits{}, `link target: "/nope" does not exist`},
		{"link to a directory", hand(t, append(symlinkDir, on(cmdLink, "l2", str(attrPathLink, "d")))...), Limits{}, `link target "/d" is a directory`},
		{"rename nothing", hand(t, on(cmdRename, "a", str(attrPathTo, "b"))), Limits{}, `"/a" does not exist`},
		{"rename into itself", hand(t, append(symlinkDir, on(cmdMkdir, "d/e"), on(cmdRename, "d", str(attrPathTo, "d/e/f")))...), Limits{}, `moves a directory into itself, to "/d/e/f"`},
		{"rename over a full directory", hand(t, append(symlinkDir, on(cmdMkdir, "d/e"), on(cmdMkdir, "x"), on(cmdRename, "x", str(attrPathTo, "d")))...), Limits{}, "not empty"},
		{"rename a file over a directory", hand(t, append(symlinkDir, on(cmdRename, "l", str(attrPathTo, "d")))...), Limits{}, `would replace the directory "/d" with a symlink`},
		{"rename the top", hand(t, on(cmdRename, "", str(attrPathTo, "x"))), Limits{}, "top directory cannot be made, moved or removed"},
		{"unlink a directory", hand(t, append(symlinkDir, on(cmdUnlink, "d"))...), Limits{}, `"/d" is a directory`},
		{"rmdir a file", hand(t, append(file, on(cmdRmdir, "f"))...), Limits{}, "is a regular file, not a directory"},
		{"rmdir a full directory", hand(t, append(symlinkDir, on(cmdMkdir, "d/e"), on(cmdRmdir, "d"))...), Limits{}, `"/d" is not empty`},
		{"write to a directory", hand(t, append(symlinkDir, on(cmdWrite, "d", num(attrFileOffset, 0), str(attrData, "x")))...), Limits{}, `"/d" is a directory, not a regular file`},
		{"write back", hand(t, append(file, on(cmdWrite, "f", num(attrFileOffset, 10), str(attrData, "x")), on(cmdWrite, "f", num(attrFileOffset, 5), str(attrData, "y")))...), Limits{}, "command 4 (write \"/f\") at byte 111: data for offset 5, before the end of the data already written (11)"},
		{"clone from elsewhere", hand(t, append(file, on(cmdClone, "f", num(attrFileOffset, 0), num(attrCloneLen, 1), str(attrClonePath, "f"), num(attrCloneOffset, 0), tattr{attrCloneUUID, make([]byte, 16)}, num(attrCloneCtransid, 5)))...), Limits{}, "clone from another subvolume"},
		{"clone past the end", hand(t, append(file, on(cmdMkfile, "g"), cloneOf("g", 0, "f", 0, 1))...), Limits{}, `clone source "/f": 1 bytes at offset 0 pass its end (0)`},
		{"clone onto itself", hand(t, append(file, on(cmdTruncate, "f", num(attrSize, 10)), cloneOf("f", 5, "f", 0, 6))...), Limits{}, "overlaps"},
		{"chmod a symlink", hand(t, append(symlinkDir, on(cmdChmod, "l", num(attrMode, 0o644)))...), Limits{}, "receive's chmod would follow it"},
		{"chmod a type", hand(t, on(cmdChmod, "", num(attrMode, fstree.ModeDir|0o755))), Limits{}, "more than permission bits"},
		{"uid of 33 bits", hand(t, on(cmdChown, "", num(attrUid, 1<<32), num(attrGid, 0))), Limits{}, "does not fit in 32 bits"},
		{"nanoseconds", hand(t, on(cmdUtimes, "", stamp(attrAtime, 0, 1e9), stamp(attrMtime, 0, 0), stamp(attrCtime, 0, 0))), Limits{}, "atime has 1000000000 nanoseconds"},
		{"year 1", hand(t, on(cmdUtimes, "", stamp(attrAtime, 0, 0), stamp(attrMtime, uint64(time.Time{}.Unix()), 0), stamp(attrCtime, 0, 0))), Limits{}, "mtime is 0001-01-01T00:00:00Z, a time the tree cannot hold"},
		{"no such xattr", hand(t, on(cmdRemoveXattr, "", str(attrXattrName, "user.x"))), Limits{}, `no xattr "user.x"`},
		{"xattr name", hand(t, on(cmdSetXattr, "", str(attrXattrName, ""), str(attrXattrData, ""))), Limits{}, "invalid xattr name"},
		{"xattr value", hand(t, on(cmdSetXattr, "", str(attrXattrName, "user.x"), str(attrXattrData, "12345"))), Limits{MaxXattr: 4}, "value of 5 bytes, more than the limit of 4"},
		{"xattrs of an inode", hand(t, on(cmdSetXattr, "", str(attrXattrName, "user.x"), str(attrXattrData, "1")), on(cmdSetXattr, "", str(attrXattrName, "user.y"), str(attrXattrData, "1"))), Limits{MaxXattrs: 10}, "xattrs come to 14 bytes, more than the limit of 10"},
		{"inodes", hand(t, on(cmdMkdir, "a"), on(cmdMkdir, "b")), Limits{MaxInodes: 2}, "command 3 (mkdir \"/b\") at byte 79: more than the limit of 2 inodes"},
		{"path", hand(t, on(cmdMkdir, "abcde")), Limits{MaxPath: 4}, "path of 5 bytes, more than the limit of 4"},
		{"depth", hand(t, on(cmdMkdir, "a"), on(cmdMkdir, "a/b")), Limits{MaxDepth: 1}, `path "a/b" is 2 names deep, more than the limit of 1`},
		{"symlink target", hand(t, on(cmdSymlink, "l", str(attrPathLink, "abcde"))), Limits{MaxPath: 4}, "symlink target is 5 bytes"},
		{"depth by rename", hand(t, on(cmdMkdir, "a"), on(cmdMkdir, "b"), on(cmdMkdir, "b/c"), on(cmdRename, "b", str(attrPathTo, "a/b"))), Limits{MaxDepth: 2}, `send stream v: "/a/b/c" is deeper than 2 names or longer than`},
		{"file size", hand(t, append(file, on(cmdTruncate, "f", num(attrSize, 1<<40)))...), Limits{}, "size 1099511627776 is more than the limit of 68719476736"},
		{"write past the size limit", hand(t, append(file, on(cmdWrite, "f", num(attrFileOffset, 1<<36-1), str(attrData, "xy")))...), Limits{}, "2 bytes at offset 68719476735 pass the file size limit"},
		{"stream size", valid, Limits{MaxBytes: 70}, "command 2 at byte 64: the stream is longer than the limit of 70 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := ReadFull(bytes.NewReader(c.stream), c.lim)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want %q", err, c.want)
			}
		})
	}
}

// TestReadFullHostile: streams that claim huge sizes or make data grow
// by cloning are refused, or read when the claim is only holes, within
// a few MiB and well under a second.
func TestReadFullHostile(t *testing.T) {
	claims4G := binary.LittleEndian.AppendUint32(encode(t, subvolV), 1<<32-1)
	claims4G = append(claims4G, make([]byte, 100)...)
	longAttr := encode(t, subvolV, on(cmdMkfile, "f"))
	binary.LittleEndian.PutUint16(longAttr[len(longAttr)-3:], 0xffff) // the path's length
	binary.LittleEndian.PutUint32(longAttr[len(longAttr)-9:], 0)      // crc over the change
	binary.LittleEndian.PutUint32(longAttr[len(longAttr)-9:], crc(longAttr[len(longAttr)-15:]))
	file := on(cmdMkfile, "f")
	doubling := []tcmd{file, on(cmdWrite, "f", num(attrFileOffset, 0), tattr{attrData, fstreetest.Data(1, WriteChunk)})}
	for n := uint64(WriteChunk); n < 1<<30; n *= 2 {
		doubling = append(doubling, cloneOf("f", n, "f", 0, n))
	}
	var inodes []tcmd
	for i := 0; i < 1001; i++ {
		inodes = append(inodes, on(cmdMkdir, fmt.Sprint(i)))
	}
	for _, c := range []struct {
		name   string
		stream []byte
		lim    Limits
		want   string // "" reads the stream
	}{
		{"command of 4 GiB", claims4G, Limits{}, "claims 4294967295 bytes of attributes"},
		{"attribute of 64 KiB", longAttr, Limits{}, "path attribute at byte 10 of the command: claims 65535 bytes, 1 are left"},
		{"write at 8 EiB", hand(t, file, on(cmdWrite, "f", num(attrFileOffset, 1<<63-1), str(attrData, "x"))), Limits{}, "file offset 9223372036854775807 is more than the limit"},
		{"truncate to 16 EiB", hand(t, file, on(cmdTruncate, "f", num(attrSize, 1<<64-1))), Limits{}, "size 18446744073709551615 is more than the limit"},
		{"clone of 16 EiB", hand(t, file, cloneOf("f", 0, "f", 1<<63, 1<<63)), Limits{}, "clone length 9223372036854775808 is more than the limit"},
		{"a 64 GiB hole", hand(t, file, on(cmdTruncate, "f", num(attrSize, 64<<30)), on(cmdWrite, "f", num(attrFileOffset, 64<<30-1), str(attrData, "x"))), Limits{}, ""},
		{"clones doubling", hand(t, doubling...), Limits{MaxBytes: 4 << 20}, "the stream and the data it clones pass the limit of 4194304 bytes"},
		{"inodes", hand(t, inodes...), Limits{MaxInodes: 1001}, `command 1002 (mkdir "/1000") at byte`},
	} {
		t.Run(c.name, func(t *testing.T) {
			var tr *fstree.Tree
			var err error
			testenv.Bounded(t, 16<<20, time.Second, func() {
				tr, _, err = ReadFull(bytes.NewReader(c.stream), c.lim)
			})
			switch {
			case c.want == "" && err != nil:
				t.Errorf("ReadFull: %v", err)
			case c.want == "":
				if n := lookup(t, tr, "f"); n.Size() != 64<<30 || len(n.Content.(fstree.Sparse).Extents()) != 1 {
					t.Errorf("f: %d bytes, content %v", n.Size(), n.Content)
				}
			case err == nil || !strings.Contains(err.Error(), c.want):
				t.Errorf("error %v, want %q", err, c.want)
			}
		})
	}
}
