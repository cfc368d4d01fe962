// Package netserve serves one directory read-only over TFTP (RFC 1350
// with the blksize, tsize and windowsize options, via pack.ag/tftp) and
// HTTP, the two ways a netbooting node fetches files: U-Boot loads the
// boot script, pxelinux files, kernel and initramfs by TFTP; nodeinit
// fetches root and card images by HTTP.
//
// No name can reach outside the directory: ".." elements are refused,
// leading slashes mean the directory itself, and files are opened through
// os.Root, which refuses symbolic links that lead out. Only regular files
// are served. The directory is opened anew for every request, so a tree
// replaced by `mkimage netboot` (written aside, then renamed) is served at
// once.
//
// With a status directory (Status), the HTTP server also takes the
// nodes' signed status reports (POST /status/NODE) and lists them (GET
// /status/); FetchStatus is the build host's client for that list.
package netserve

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
)

// ErrOutside is returned for names that try to leave the directory.
var ErrOutside = errors.New("name leaves the served directory")

// cleanName turns a requested name into a path relative to the served
// directory.
func cleanName(name string) (string, error) {
	if strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("%q: %w", name, ErrOutside)
	}
	// Windows-style TFTP clients send backslashes.
	name = strings.ReplaceAll(name, "\\", "/")
	for _, e := range strings.Split(name, "/") {
		if e == ".." {
			return "", fmt.Errorf("%q: %w", name, ErrOutside)
		}
	}
	name = strings.TrimLeft(path.Clean("/"+name), "/")
	if name == "" {
		name = "."
	}
	return name, nil
}

// Files opens files of one directory.
type Files struct{ Dir string }

// Open opens a regular file by its requested name. The error wraps
// fs.ErrNotExist for missing files, ErrOutside for names leaving the
// directory and fs.ErrPermission for anything but a regular file.
func (f Files) Open(name string) (*os.File, os.FileInfo, error) {
	rel, err := cleanName(name)
	if err != nil {
		return nil, nil, err
	}
	root, err := os.OpenRoot(f.Dir)
	if err != nil {
		return nil, nil, err
	}
	defer root.Close()
	// O_NONBLOCK: opening a FIFO must not hang the server.
	file, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if strings.Contains(err.Error(), "path escapes") {
			return nil, nil, fmt.Errorf("%q: %w", name, ErrOutside)
		}
		return nil, nil, err
	}
	fi, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		file.Close()
		return nil, nil, fmt.Errorf("%q is not a regular file: %w", name, fs.ErrPermission)
	}
	return file, fi, nil
}
