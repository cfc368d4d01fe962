package policy

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/mkimage/mkimage/internal/atomicfile"
	"github.com/mkimage/mkimage/internal/cluster/plan"
	"github.com/mkimage/mkimage/internal/i2p"
)

// i2pdUser owns i2pd's data dir in a Debian root (the package's postinst
// makes it); the router runs as it and must read its keys.
const i2pdUser = "i2pd"

// I2P gives the root's i2pd the node's tunnels: it makes each server
// tunnel's destination keys in i2pd's data dir when they are missing (on
// the node, so no image carries a private key; never replaced, so the
// address stays the same across boots and updates), logs and records the
// addresses (plan.I2PAddressesPath) for the build host to collect, writes
// the tunnels file (plan.I2PTunnelsPath) and enables i2pd. A node without
// tunnels loses the tunnels and addresses files but keeps its keys: a
// service that comes back gets its old address. i2pd itself is never
// disabled here: the root may run it for more than these tunnels.
func I2P(env Env) error {
	root, x := env.Root, env.Node.I2P
	tunnels := filepath.Join(root, plan.I2PTunnelsPath)
	addrs := filepath.Join(root, plan.I2PAddressesPath)
	if x == nil || len(x.Servers) == 0 && len(x.Clients) == 0 {
		return errors.Join(removeIfExists(tunnels), removeIfExists(addrs))
	}
	if !exists(root, "usr/sbin/i2pd") {
		// Writing into etc/i2pd here would make the directory the package
		// ships as a symlink (tunnels.conf.d -> tunnels.d).
		env.Log("nodeinit: i2p: i2pd not installed in the root; %d server and %d client tunnels skipped", len(x.Servers), len(x.Clients))
		return nil
	}
	uid, gid, haveUser, err := lookupUser(root, i2pdUser)
	if err != nil {
		return err
	}
	if !haveUser {
		env.Log("nodeinit: i2p: no user %s in the root's /etc/passwd; key files stay root's and i2pd may not read them", i2pdUser)
	}
	var errs []error
	var lines []string
	if len(x.Servers) > 0 {
		dir := filepath.Join(root, plan.I2PDataDir)
		if err := ownedDir(dir, uid, gid, haveUser); err != nil {
			return err
		}
		for _, s := range x.Servers {
			addr, err := serverKeys(env, dir, s.Service, uid, gid, haveUser)
			if err != nil {
				errs = append(errs, fmt.Errorf("service %s: %w", s.Service, err))
				continue
			}
			env.Log("nodeinit: i2p: service %s reachable at %s", s.Service, addr)
			lines = append(lines, s.Service+" "+addr+"\n")
		}
	}
	if len(lines) > 0 {
		if err := atomicfile.WriteFileIfChanged(addrs, []byte(strings.Join(lines, "")), 0o644); err != nil {
			errs = append(errs, err)
		}
	} else if err := removeIfExists(addrs); err != nil {
		errs = append(errs, err)
	}
	if err := atomicfile.WriteFileIfChanged(tunnels, []byte(TunnelsConf(x)), 0o644); err != nil {
		errs = append(errs, err)
	}
	if found, err := enableService(root, "i2pd", true); err != nil {
		errs = append(errs, fmt.Errorf("i2pd: %w", err))
	} else if !found {
		env.Log("nodeinit: i2p: root has i2pd but neither systemd nor /etc/init.d/i2pd; not enabled")
	}
	return errors.Join(errs...)
}

// TunnelsConf is the i2pd tunnels file for a plan, in the format of
// i2pd's tunnels.conf (ClientContext::ReadTunnels). Section names carry a
// prefix so they cannot collide with the root's own tunnels.
func TunnelsConf(x *plan.I2P) string {
	var b strings.Builder
	b.WriteString(generated)
	for _, s := range x.Servers {
		fmt.Fprintf(&b, "\n[mkimage-server-%s]\ntype = %s\nhost = %s\nport = %d\nkeys = %s\n", s.Service, s.Type, s.Host, s.Port, plan.I2PKeyFile(s.Service))
		if s.HostOverride != "" {
			fmt.Fprintf(&b, "hostoverride = %s\n", s.HostOverride)
		}
	}
	for _, c := range x.Clients {
		// keys default to transient: a client needs no stable address.
		fmt.Fprintf(&b, "\n[mkimage-client-%s]\ntype = client\naddress = %s\nport = %d\ndestination = %s\n", c.Name, c.Address, c.Port, c.Destination)
	}
	return b.String()
}

// serverKeys returns the address of a service's key file, making the file
// first if there is none. An existing file is never replaced, not even a
// broken one: that is an error for a person to look at, since replacing
// it would give the service a new address.
func serverKeys(env Env, dir, service string, uid, gid int, chown bool) (string, error) {
	p := filepath.Join(dir, plan.I2PKeyFile(service))
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		if b, err = i2p.NewKeys(); err != nil {
			return "", err
		}
		// WriteNewFile: a file that appeared meanwhile is not replaced
		// (then it is read below).
		if err = atomicfile.WriteNewFile(p, b, 0o600); err == nil {
			env.Log("nodeinit: i2p: service %s: new destination keys in %s", service, strings.TrimPrefix(p, env.Root))
		} else if errors.Is(err, fs.ErrExist) {
			b, err = os.ReadFile(p)
		}
	}
	if err != nil {
		return "", err
	}
	k, err := i2p.Parse(b)
	if err != nil {
		return "", fmt.Errorf("%s: not an i2pd key file i2pd can use (%w); left as it is", p, err)
	}
	// Every boot, not only after writing: a power cut between writing the
	// file and changing its owner leaves it root's.
	if err := ownFile(p, 0o600, uid, gid, chown); err != nil {
		return "", err
	}
	return k.Address, nil
}

// ownedDir makes dir (i2pd's data dir, which its package makes) if it is
// missing, owned like the package's.
func ownedDir(dir string, uid, gid int, chown bool) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if chown {
		return os.Chown(dir, uid, gid)
	}
	return nil
}

// ownFile sets p's mode and, with chown, its owner, where they differ.
func ownFile(p string, mode os.FileMode, uid, gid int, chown bool) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.Mode().Perm() != mode {
		if err := os.Chmod(p, mode); err != nil {
			return err
		}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if chown && ok && (int(st.Uid) != uid || int(st.Gid) != gid) {
		if err := os.Chown(p, uid, gid); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

// lookupUser reads a user's uid and primary gid from the root's
// etc/passwd (the initramfs has its own users, or none). A root without
// passwd has no such user.
func lookupUser(root, name string) (uid, gid int, ok bool, err error) {
	f, err := os.Open(filepath.Join(root, "etc/passwd"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0, false, nil
	}
	if err != nil {
		return 0, 0, false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 4 || fields[0] != name {
			continue
		}
		u, err1 := strconv.Atoi(fields[2])
		g, err2 := strconv.Atoi(fields[3])
		if err1 != nil || err2 != nil {
			return 0, 0, false, fmt.Errorf("%s: malformed passwd line for %s", f.Name(), name)
		}
		return u, g, true, nil
	}
	return 0, 0, false, sc.Err()
}

// reportI2P is Report's line for the i2p tunnels.
func reportI2P(env Env) (string, bool) {
	x := env.Node.I2P
	if !exists(env.Root, "usr/sbin/i2pd") {
		return "i2p: i2pd not installed in the root (tunnels not served)", false
	}
	got, err := os.ReadFile(filepath.Join(env.Root, plan.I2PTunnelsPath))
	switch {
	case err != nil:
		return fmt.Sprintf("i2p tunnels MISSING (%v)", err), false
	case string(got) != TunnelsConf(x):
		return "i2p tunnels differ from the plan", false
	}
	return fmt.Sprintf("i2p: %d server, %d client tunnels", len(x.Servers), len(x.Clients)), true
}
