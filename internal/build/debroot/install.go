package debroot

import (
	"archive/tar"
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/mkimage/mkimage/internal/build/deb"
	"github.com/mkimage/mkimage/internal/build/rootfs"
	"github.com/mkimage/mkimage/internal/filehash"
	"github.com/mkimage/mkimage/internal/fstree"
)

// Deb is a resolved package and its downloaded file.
type Deb struct {
	Pkg  *Pkg
	Path string
}

// Options tune the root Build writes.
type Options struct {
	Arch  string // "arm64"
	Suite string // for /etc/apt/sources.list
	// Mirror is the archive in sources.list (default
	// http://deb.debian.org/debian).
	Mirror string
	Epoch  time.Time
	// Slim leaves out what SlimFilters exclude as the packages are
	// unpacked (the files never enter the tree), keeps the filters in
	// SlimConfig for dpkg on the node, and has first boot tell debconf
	// that man-db never rebuilds its database.
	Slim bool
	// Container, when set, makes the root of the LXC container of that
	// name instead of a node's: /etc/hostname is the name (systemd sets
	// the container's hostname from it), and neither systemd-networkd's
	// DHCP nor the lxcfs module list is written: LXC brings eth0 up
	// with the address and gateway nodeinit pins in the container's
	// config (networkd's DHCP would find no server on the node's bridge
	// and may flush that address as foreign), and a container loads no
	// kernel modules.
	Container string
	// Progress, if set, is called before each package is unpacked with
	// the packages done, their number and the package's name, and once
	// all are done (name "").
	Progress func(done, total int, name string)
}

// HookPath is where nodeinit finds the first-boot hook that configures
// the packages.
const HookPath = "usr/lib/nodeinit/firstboot.d/50-dpkg-configure"

// stateDir holds the hook's inputs and progress on the node.
const stateDir = "var/lib/mkimage/debroot"

// mergedUsr are the top-level directories that are symlinks into /usr
// in a merged-/usr root (as debootstrap and usrmerge make them).
var mergedUsr = []string{"bin", "sbin", "lib"}

// Build checks every .deb against its index entry (sha256, package name
// and version) and unpacks them in order into a new tree: merged-/usr
// symlinks first, then each package's data with its exact owners and
// modes, then dpkg's database with every package "install ok unpacked"
// (status, info/*.list, md5sums, conffiles, maintainer scripts, trigger
// interests), the first-boot hook and the node's base configuration. Any
// bad package is an error naming it before the tree is returned.
func Build(debs []Deb, opt Options) (*fstree.Tree, error) {
	if opt.Arch == "" {
		opt.Arch = "arm64"
	}
	if opt.Mirror == "" {
		opt.Mirror = "http://deb.debian.org/debian"
	}
	t := fstree.New(opt.Epoch)
	for _, d := range mergedUsr {
		if _, err := t.MkdirAll("usr/"+d, opt.Epoch); err != nil {
			return nil, err
		}
		if err := t.Put(d, fstree.NewSymlink("usr/"+d, opt.Epoch)); err != nil {
			return nil, err
		}
	}
	w := &dbWriter{t: t, opt: opt, triggers: map[string][]string{}}
	for i, d := range debs {
		if opt.Progress != nil {
			opt.Progress(i, len(debs), d.Pkg.Name)
		}
		if err := w.install(d); err != nil {
			return nil, err
		}
	}
	if opt.Progress != nil {
		opt.Progress(len(debs), len(debs), "")
	}
	if err := w.finish(); err != nil {
		return nil, err
	}
	if err := configure(t, opt); err != nil {
		return nil, err
	}
	return t, nil
}

type dbWriter struct {
	t        *fstree.Tree
	opt      Options
	status   []statusEntry
	preinst  []string            // dpkg names with a preinst, install order
	triggers map[string][]string // trigger file -> lines
}

type statusEntry struct {
	name   string
	stanza []byte
}

// Check verifies a .deb against its index entry: the file's sha256 and
// the package name and version in its control file.
func Check(d Deb) (*deb.Package, error) {
	p := d.Pkg
	if p.SHA256 != "" {
		sum, err := filehash.SHA256(d.Path)
		if err != nil {
			return nil, fmt.Errorf("package %s %s: %w", p.Name, p.Version, err)
		}
		if sum != p.SHA256 {
			return nil, fmt.Errorf("package %s %s: %s has sha256 %s, the index says %s (corrupt or replaced download: delete it and build again)", p.Name, p.Version, d.Path, sum, p.SHA256)
		}
	}
	pkg, err := deb.Open(d.Path)
	if err != nil {
		return nil, fmt.Errorf("package %s %s: %w", p.Name, p.Version, err)
	}
	c := pkg.Control()
	if c.Package != p.Name || c.Version != p.Version {
		return nil, fmt.Errorf("package %s %s: %s holds %s %s instead (mismatched file: delete it and build again)", p.Name, p.Version, d.Path, c.Package, c.Version)
	}
	if a := c.Architecture; a != p.Arch && p.Arch != "" {
		return nil, fmt.Errorf("package %s %s: %s is for architecture %s, the index says %s", p.Name, p.Version, d.Path, a, p.Arch)
	}
	return pkg, nil
}

func (w *dbWriter) dpkgName(p *Pkg) string {
	if p.MultiArch == "same" {
		return p.Name + ":" + p.Arch
	}
	return p.Name
}

func (w *dbWriter) install(d Deb) error {
	p := d.Pkg
	if _, err := Check(d); err != nil {
		return err
	}
	ctl, err := readControlFiles(d.Path)
	if err != nil {
		return fmt.Errorf("package %s %s: %w", p.Name, p.Version, err)
	}
	list, err := w.unpack(d)
	if err != nil {
		return fmt.Errorf("package %s %s: %w", p.Name, p.Version, err)
	}
	name := w.dpkgName(p)
	info := "var/lib/dpkg/info/" + name + "."
	var lb bytes.Buffer
	for _, l := range list {
		lb.WriteString(l + "\n")
	}
	if err := w.put(info+"list", lb.Bytes(), 0o644); err != nil {
		return err
	}
	for f, data := range ctl.files {
		if f == "control" {
			continue
		}
		mode := uint32(0o644)
		if ctl.modes[f]&0o111 != 0 {
			mode = 0o755
		}
		if err := w.put(info+f, data, mode); err != nil {
			return err
		}
	}
	if _, ok := ctl.files["preinst"]; ok {
		w.preinst = append(w.preinst, name)
	}
	w.addTriggers(name, ctl.files["triggers"])
	stanza, err := w.statusStanza(p, ctl)
	if err != nil {
		return err
	}
	w.status = append(w.status, statusEntry{name, stanza})
	return nil
}

// unpack streams data.tar once: into the tree, and through a tar reader
// that lists the paths for dpkg's .list file.
func (w *dbWriter) unpack(d Deb) ([]string, error) {
	pkg, err := deb.Open(d.Path)
	if err != nil {
		return nil, err
	}
	dec, err := pkg.OpenData()
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	member := pkg.DataMember()
	pr, pw := io.Pipe()
	type result struct {
		list []string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		var r result
		tr := tar.NewReader(pr)
		for {
			h, err := tr.Next()
			if err != nil {
				if err != io.EOF {
					r.err = err
				}
				break
			}
			p := strings.TrimRight(strings.TrimPrefix(h.Name, "."), "/")
			if p == "" {
				p = "/."
			}
			r.list = append(r.list, p)
		}
		io.Copy(io.Discard, pr)
		ch <- r
	}()
	// dpkg lists filtered files in the package's .list all the same,
	// so the list is made of every entry.
	opt := rootfs.TarOptions{Epoch: w.opt.Epoch, FollowDirSymlinks: true}
	if w.opt.Slim {
		opt.Keep = Keep(SlimFilters)
	}
	err = rootfs.AddTar(w.t, d.Path+": "+member, io.TeeReader(dec, pw), opt)
	pw.Close()
	r := <-ch
	if err != nil {
		return nil, err
	}
	if r.err != nil {
		return nil, fmt.Errorf("%s: %s: %w", d.Path, member, r.err)
	}
	return r.list, nil
}

// statusStanza is the package's control file with Status (and the
// shipped conffiles' md5sums, as dpkg records them at unpack).
func (w *dbWriter) statusStanza(p *Pkg, ctl *debFiles) ([]byte, error) {
	c := bytes.TrimSpace(ctl.files["control"])
	if len(c) == 0 {
		return nil, fmt.Errorf("package %s %s: no control file", p.Name, p.Version)
	}
	first, rest, _ := bytes.Cut(c, []byte("\n"))
	var b bytes.Buffer
	b.Write(first)
	b.WriteString("\nStatus: install ok unpacked\n")
	if len(rest) > 0 {
		b.Write(rest)
		b.WriteByte('\n')
	}
	var confs []string
	for _, l := range strings.Split(string(ctl.files["conffiles"]), "\n") {
		fields := strings.Fields(l)
		if len(fields) == 0 {
			continue
		}
		cf := fields[len(fields)-1]
		flags := append([]string(nil), fields[:len(fields)-1]...)
		sum := "newconffile"
		if n, ok := w.lookup(cf); ok && n.Type() == fstree.ModeRegular {
			data, err := fstree.ReadAll(n.Content)
			if err != nil {
				return nil, fmt.Errorf("package %s: conffile %s: %w", p.Name, cf, err)
			}
			h := md5.Sum(data)
			sum = hex.EncodeToString(h[:])
		}
		confs = append(confs, strings.TrimSpace(" "+cf+" "+sum+" "+strings.Join(flags, " ")))
	}
	if len(confs) > 0 {
		b.WriteString("Conffiles:\n")
		for _, cf := range confs {
			b.WriteString(" " + cf + "\n")
		}
	}
	return b.Bytes(), nil
}

// lookup finds an absolute path in the tree through the merged-/usr
// symlinks.
func (w *dbWriter) lookup(p string) (*fstree.Inode, bool) {
	p = strings.TrimPrefix(path.Clean(p), "/")
	for _, d := range mergedUsr {
		if strings.HasPrefix(p, d+"/") {
			p = "usr/" + p
		}
	}
	return w.t.Lookup(p)
}

// addTriggers records a package's trigger interests where dpkg keeps
// them (triggers/File for file triggers, triggers/NAME for named ones),
// so triggers activated while configuring run as dpkg would run them.
func (w *dbWriter) addTriggers(name string, data []byte) {
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || !strings.HasPrefix(f[0], "interest") {
			continue
		}
		who := name
		if f[0] == "interest-noawait" {
			who += "/noawait"
		}
		if strings.HasPrefix(f[1], "/") {
			w.triggers["File"] = append(w.triggers["File"], f[1]+" "+who)
		} else {
			w.triggers[f[1]] = append(w.triggers[f[1]], who)
		}
	}
}

func (w *dbWriter) put(p string, data []byte, mode uint32) error {
	if _, err := w.t.MkdirAll(path.Dir(p), w.opt.Epoch); err != nil {
		return err
	}
	return w.t.Put(p, fstree.NewFile(mode, data, w.opt.Epoch))
}

// finish writes status, the trigger files and the hook's inputs.
func (w *dbWriter) finish() error {
	for _, d := range []string{"var/lib/dpkg/updates", "var/lib/dpkg/alternatives", "var/lib/dpkg/triggers", "var/lib/dpkg/info", "etc/alternatives", stateDir + "/preinst-done"} {
		if _, err := w.t.MkdirAll(d, w.opt.Epoch); err != nil {
			return err
		}
	}
	sort.Slice(w.status, func(i, j int) bool { return w.status[i].name < w.status[j].name })
	var st bytes.Buffer
	for _, e := range w.status {
		st.Write(e.stanza)
		st.WriteByte('\n')
	}
	files := map[string][]byte{
		"var/lib/dpkg/status":            st.Bytes(),
		"var/lib/dpkg/available":         nil,
		"var/lib/dpkg/info/format":       []byte("1\n"),
		"var/lib/dpkg/triggers/Unincorp": nil,
		stateDir + "/preinst-order":      []byte(strings.Join(w.preinst, "\n") + "\n"),
		stateDir + "/packages":           []byte(fmt.Sprintf("%d\n", len(w.status))),
	}
	if w.opt.Slim {
		files[SlimConfig] = dpkgConfig(SlimFilters)
		files[stateDir+"/debconf-selections"] = []byte(slimSelections)
	}
	for name, lines := range w.triggers {
		sort.Strings(lines)
		files["var/lib/dpkg/triggers/"+name] = []byte(strings.Join(lines, "\n") + "\n")
	}
	for p, data := range files {
		if err := w.put(p, data, 0o644); err != nil {
			return err
		}
	}
	return w.put(HookPath, []byte(hookScript), 0o755)
}
