package flash

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Sys reads the kernel's view of disks, mounts and swap below Root: "/"
// on a real system, a fake tree in tests.
type Sys struct{ Root string }

func (s Sys) path(p string) string { return filepath.Join(s.Root, p) }

// Disk is a whole block device as sysfs describes it.
type Disk struct {
	Name      string // kernel name, e.g. "sdb"
	Dev       string // "major:minor"
	Size      int64  // bytes
	Removable bool
	Model     string
	Parts     []Part
	Holders   []string // device-mapper/md devices built on the disk or a partition
}

// Part is a partition of a Disk.
type Part struct{ Name, Dev string }

// Disk reads /sys/block/NAME.
func (s Sys) Disk(name string) (*Disk, error) {
	dir := s.path("/sys/block/" + name)
	d := &Disk{Name: name}
	var err error
	if d.Dev, err = readLine(dir + "/dev"); err != nil {
		return nil, fmt.Errorf("%s is not a disk the kernel knows: %w", name, err)
	}
	sectors, err := readLine(dir + "/size")
	if err != nil {
		return nil, err
	}
	n, err := strconv.ParseInt(sectors, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%s/size: %q is not a number", dir, sectors)
	}
	d.Size = n * 512 // sysfs counts 512-byte sectors whatever the device's
	rm, _ := readLine(dir + "/removable")
	d.Removable = rm == "1"
	d.Model, _ = readLine(dir + "/device/model")
	d.Holders = append(d.Holders, listDir(dir+"/holders")...)
	for _, e := range listDir(dir) {
		if _, err := os.Stat(filepath.Join(dir, e, "partition")); err != nil {
			continue
		}
		dev, _ := readLine(filepath.Join(dir, e, "dev"))
		d.Parts = append(d.Parts, Part{Name: e, Dev: dev})
		d.Holders = append(d.Holders, listDir(filepath.Join(dir, e, "holders"))...)
	}
	return d, nil
}

// DiskOf finds the disk of the block device node at path (below the real
// root: device numbers come from stat).
func (s Sys) DiskOf(path string) (*Disk, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return nil, fmt.Errorf("%s is not a block device", path)
	}
	dev := fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
	link, err := filepath.EvalSymlinks(s.path("/sys/dev/block/" + dev))
	if err != nil {
		return nil, fmt.Errorf("%s: no sysfs entry for device %s: %w", path, dev, err)
	}
	if _, err := os.Stat(filepath.Join(link, "partition")); err == nil {
		disk := filepath.Base(filepath.Dir(link))
		return nil, fmt.Errorf("%s is partition %s of disk %s: give the whole disk, /dev/%s", path, filepath.Base(link), disk, disk)
	}
	return s.Disk(filepath.Base(link))
}

// Problems lists why writing to d could destroy something it should not:
// it is mounted, holds the running root or swap, is used by device-mapper
// or md, is not removable, or is larger than maxSize (0: no limit).
func (s Sys) Problems(d *Disk, maxSize int64) ([]string, error) {
	devs := map[string]string{d.Dev: d.Name}
	names := map[string]bool{d.Name: true}
	for _, p := range d.Parts {
		devs[p.Dev] = p.Name
		names[p.Name] = true
	}
	var probs []string
	mounts, err := s.mounts()
	if err != nil {
		return nil, err
	}
	for _, m := range mounts {
		// btrfs reports an anonymous device number, so match the source
		// device's name as well.
		name, ok := devs[m.dev]
		if !ok && names[s.devName(m.source)] {
			name, ok = s.devName(m.source), true
		}
		if !ok {
			continue
		}
		if m.point == "/" {
			probs = append(probs, fmt.Sprintf("/dev/%s holds the running system's root filesystem", name))
		} else {
			probs = append(probs, fmt.Sprintf("/dev/%s is mounted on %s (unmount it first)", name, m.point))
		}
	}
	swaps, err := s.swaps()
	if err != nil {
		return nil, err
	}
	for _, sw := range swaps {
		if n := s.devName(sw); names[n] {
			probs = append(probs, fmt.Sprintf("/dev/%s is in use as swap (swapoff it first)", n))
		}
	}
	for _, h := range d.Holders {
		probs = append(probs, fmt.Sprintf("%s is used by /dev/%s (LVM, dm-crypt or RAID)", d.Name, h))
	}
	if !d.Removable {
		probs = append(probs, fmt.Sprintf("%s is not removable (/sys/block/%s/removable is 0): an internal disk? (some card readers say 0 too)", d.Name, d.Name))
	}
	if maxSize > 0 && d.Size > maxSize {
		probs = append(probs, fmt.Sprintf("%s is %s, larger than --max-size %s: is it really an SD card?", d.Name, human(d.Size), human(maxSize)))
	}
	return probs, nil
}

type mount struct{ dev, point, source string }

// mounts parses /proc/self/mountinfo: "id parent maj:min root point opts
// [optional...] - fstype source superopts".
func (s Sys) mounts() ([]mount, error) {
	f, err := os.Open(s.path("/proc/self/mountinfo"))
	if err != nil {
		return nil, fmt.Errorf("cannot tell what is mounted: %w", err)
	}
	defer f.Close()
	var ms []mount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+2 >= len(fields) {
			continue
		}
		ms = append(ms, mount{dev: fields[2], point: unescape(fields[4]), source: fields[sep+2]})
	}
	return ms, sc.Err()
}

// swaps returns the file names in /proc/swaps.
func (s Sys) swaps() ([]string, error) {
	f, err := os.Open(s.path("/proc/swaps"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // kernel without swap support
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 0 && fields[0] != "Filename" {
			out = append(out, unescape(fields[0]))
		}
	}
	return out, sc.Err()
}

// devName turns "/dev/sdb1" or a /dev/disk/by-* link into "sdb1"; links
// resolve only on the real root.
func (s Sys) devName(p string) string {
	if !strings.HasPrefix(p, "/dev/") {
		return ""
	}
	if s.Root == "/" || s.Root == "" {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
	}
	return filepath.Base(p)
}

// unescape undoes the octal escapes (\040 for space) of /proc files.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func readLine(p string) (string, error) {
	b, err := os.ReadFile(p)
	return strings.TrimSpace(string(b)), err
}

func listDir(p string) []string {
	ents, _ := os.ReadDir(p)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// human prints a byte count the way card vendors do, with the binary
// size beside it.
func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GB (%.1f GiB)", float64(n)/1e9, float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB (%.1f MiB)", float64(n)/1e6, float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", n)
}
