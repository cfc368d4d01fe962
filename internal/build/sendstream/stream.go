// Package sendstream writes btrfs send streams (format version 1) from
// in-memory file trees, so that `btrfs receive` on a node can apply a new
// root, whole or as the changes against a parent version, without the
// build host ever making a btrfs filesystem. The same trees and options
// always give the same bytes. ReadFull reads a full stream back into a
// tree, so an update bundle can write the changes against a version it
// kept only as its full stream.
//
// A stream is a header ("btrfs-stream\0", le32 version 1) and commands:
// le32 payload length, le16 command, le32 crc32c of the command with the
// crc field zero, then attributes as (le16 type, le16 length, data).
package sendstream

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"time"
)

// Commands of stream version 1 (btrfs send.h).
const (
	cmdSubvol      = 1
	cmdSnapshot    = 2
	cmdMkfile      = 3
	cmdMkdir       = 4
	cmdMknod       = 5
	cmdMkfifo      = 6
	cmdMksock      = 7
	cmdSymlink     = 8
	cmdRename      = 9
	cmdLink        = 10
	cmdUnlink      = 11
	cmdRmdir       = 12
	cmdSetXattr    = 13
	cmdRemoveXattr = 14
	cmdWrite       = 15
	cmdClone       = 16
	cmdTruncate    = 17
	cmdChmod       = 18
	cmdChown       = 19
	cmdUtimes      = 20
	cmdEnd         = 21
	// cmdUpdateExtent replaces WRITE in streams of btrfs send --no-data.
	cmdUpdateExtent = 22
)

// cmdNames name the commands, for messages.
var cmdNames = map[uint16]string{
	cmdSubvol: "subvol", cmdSnapshot: "snapshot", cmdMkfile: "mkfile", cmdMkdir: "mkdir", cmdMknod: "mknod",
	cmdMkfifo: "mkfifo", cmdMksock: "mksock", cmdSymlink: "symlink", cmdRename: "rename", cmdLink: "link",
	cmdUnlink: "unlink", cmdRmdir: "rmdir", cmdSetXattr: "set_xattr", cmdRemoveXattr: "remove_xattr",
	cmdWrite: "write", cmdClone: "clone", cmdTruncate: "truncate", cmdChmod: "chmod", cmdChown: "chown",
	cmdUtimes: "utimes", cmdEnd: "end", cmdUpdateExtent: "update_extent",
}

// cmdName names command c, known or not.
func cmdName(c uint16) string {
	if name, ok := cmdNames[c]; ok {
		return name
	}
	return fmt.Sprintf("unknown command %d", c)
}

// Attributes of stream version 1.
const (
	attrUUID          = 1
	attrCtransid      = 2
	attrIno           = 3
	attrSize          = 4
	attrMode          = 5
	attrUid           = 6
	attrGid           = 7
	attrRdev          = 8
	attrCtime         = 9
	attrMtime         = 10
	attrAtime         = 11
	attrXattrName     = 13
	attrXattrData     = 14
	attrPath          = 15
	attrPathTo        = 16
	attrPathLink      = 17
	attrFileOffset    = 18
	attrData          = 19
	attrCloneUUID     = 20
	attrCloneCtransid = 21
	attrClonePath     = 22
	attrCloneOffset   = 23
	attrCloneLen      = 24
	attrMax           = 24 // the last attribute of version 1
)

// attrNames name the attributes, for messages.
var attrNames = map[uint16]string{
	attrUUID: "uuid", attrCtransid: "ctransid", attrIno: "inode number", attrSize: "size", attrMode: "mode",
	attrUid: "uid", attrGid: "gid", attrRdev: "rdev", attrCtime: "ctime", attrMtime: "mtime", attrAtime: "atime",
	attrPath: "path", attrPathTo: "new path", attrPathLink: "link target",
	attrXattrName: "xattr name", attrXattrData: "xattr value", attrFileOffset: "file offset", attrData: "data",
	attrCloneUUID: "clone uuid", attrCloneCtransid: "clone ctransid", attrClonePath: "clone path",
	attrCloneOffset: "clone offset", attrCloneLen: "clone length",
}

const (
	magic = "btrfs-stream\x00"
	// maxCommand is the largest command a version 1 reader accepts,
	// header included (BTRFS_SEND_BUF_SIZE_V1).
	maxCommand = 64 << 10
	// WriteChunk is the most data one WRITE command carries, as the
	// kernel sends it (BTRFS_SEND_READ_SIZE).
	WriteChunk = 48 << 10
	// maxPath is PATH_MAX less its NUL: receive rejects longer paths.
	maxPath   = 4095
	cmdHeader = 10
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc is btrfs's crc32c with seed 0 and no final inversion (the kernel's
// crc32c(0, buf, len)).
func crc(p []byte) uint32 { return ^crc32.Update(^uint32(0), castagnoli, p) }

// encoder builds one command at a time and writes it whole.
type encoder struct {
	w   io.Writer
	buf []byte
	n   int64 // bytes written so far
	err error // first attribute error of the current command
}

func (e *encoder) header() error {
	var b [17]byte
	copy(b[:], magic)
	binary.LittleEndian.PutUint32(b[13:], 1)
	return e.write(b[:])
}

func (e *encoder) write(b []byte) error {
	n, err := e.w.Write(b)
	e.n += int64(n)
	if err != nil {
		return fmt.Errorf("writing send stream: %w", err)
	}
	return nil
}

func (e *encoder) begin(cmd uint16) {
	e.buf = append(e.buf[:0], make([]byte, cmdHeader)...)
	binary.LittleEndian.PutUint16(e.buf[4:], cmd)
	e.err = nil
}

func (e *encoder) bytes(typ uint16, data []byte) {
	if len(data) > 0xffff {
		if e.err == nil {
			e.err = fmt.Errorf("%s is %d bytes, more than a send stream attribute holds (65535)", attrNames[typ], len(data))
		}
		return
	}
	e.buf = binary.LittleEndian.AppendUint16(e.buf, typ)
	e.buf = binary.LittleEndian.AppendUint16(e.buf, uint16(len(data)))
	e.buf = append(e.buf, data...)
}

func (e *encoder) str(typ uint16, s string) {
	if len(s) > 0xffff {
		e.bytes(typ, []byte(s)) // reports the length
		return
	}
	e.buf = binary.LittleEndian.AppendUint16(e.buf, typ)
	e.buf = binary.LittleEndian.AppendUint16(e.buf, uint16(len(s)))
	e.buf = append(e.buf, s...)
}

func (e *encoder) u64(typ uint16, v uint64) {
	e.buf = binary.LittleEndian.AppendUint16(e.buf, typ)
	e.buf = binary.LittleEndian.AppendUint16(e.buf, 8)
	e.buf = binary.LittleEndian.AppendUint64(e.buf, v)
}

// time writes a btrfs_timespec; a zero time is the Unix epoch, as the
// image writer stores it.
func (e *encoder) time(typ uint16, t time.Time) {
	var sec int64
	var nsec int
	if !t.IsZero() {
		sec, nsec = t.Unix(), t.Nanosecond()
	}
	e.buf = binary.LittleEndian.AppendUint16(e.buf, typ)
	e.buf = binary.LittleEndian.AppendUint16(e.buf, 12)
	e.buf = binary.LittleEndian.AppendUint64(e.buf, uint64(sec))
	e.buf = binary.LittleEndian.AppendUint32(e.buf, uint32(nsec))
}

// end finishes the command: length, crc, and out it goes.
func (e *encoder) end() error {
	if e.err != nil {
		return e.err
	}
	if len(e.buf) > maxCommand {
		return fmt.Errorf("command %d is %d bytes, more than a version 1 stream allows (%d)", binary.LittleEndian.Uint16(e.buf[4:]), len(e.buf), maxCommand)
	}
	binary.LittleEndian.PutUint32(e.buf[0:], uint32(len(e.buf)-cmdHeader))
	binary.LittleEndian.PutUint32(e.buf[6:], 0)
	binary.LittleEndian.PutUint32(e.buf[6:], crc(e.buf))
	return e.write(e.buf)
}
