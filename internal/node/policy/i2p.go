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

// I2P gives the node's i2pd its tunnels, in the root i2pd runs in (the
// node's, or the container's that runs it: daemonRoot): it makes each
// server tunnel's destination keys in i2pd's data dir when they are
// missing (on the node, so no image carries a private key; never
// replaced, so the address stays the same across boots and updates),
// logs and records the addresses in the node's root
// (plan.I2PAddressesPath) for the build host to collect, writes the
// tunnels file (plan.I2PTunnelsPath) and enables i2pd. A node without
// tunnels loses the tunnels and addresses files but keeps its keys: a
// service that comes back gets its old address. i2pd itself is never
// disabled here: the root may run it for more than these tunnels.
func I2P(env Env) error {
	x := env.Node.I2P
	node, err := os.OpenRoot(env.Root)
	if err != nil {
		return err
	}
	defer node.Close()
	r, where, err := daemonRoot(env, node, plan.RunsI2PD)
	if err != nil {
		return err
	}
	defer r.Close()
	if x == nil || len(x.Servers) == 0 && len(x.Clients) == 0 {
		return errors.Join(removeIfExists(r, plan.I2PTunnelsPath), removeIfExists(r, keysOwnerDropIn), removeIfExists(node, plan.I2PAddressesPath))
	}
	if !exists(r, "usr/sbin/i2pd") {
		// Writing into etc/i2pd here would make the directory the package
		// ships as a symlink (tunnels.conf.d -> tunnels.d).
		env.Log("nodeinit: i2p: i2pd not installed in %s; %d server and %d client tunnels skipped", label(where), len(x.Servers), len(x.Clients))
		return nil
	}
	uid, gid, haveUser, err := lookupUser(r, i2pdUser)
	if err != nil {
		return err
	}
	if !haveUser && where == "" {
		env.Log("nodeinit: i2p: no user %s in the root's /etc/passwd; key files stay root's until i2pd.service starts or the next boot", i2pdUser)
	}
	var errs []error
	var lines, keys []string
	if len(x.Servers) > 0 {
		if err := ownedDir(r, plan.I2PDataDir, uid, gid, haveUser); err != nil {
			return err
		}
		for _, s := range x.Servers {
			addr, err := serverKeys(env, r, s.Service, uid, gid, haveUser)
			if err != nil {
				errs = append(errs, fmt.Errorf("service %s: %w", s.Service, err))
				continue
			}
			env.Log("nodeinit: i2p: service %s reachable at %s", s.Service, addr)
			lines = append(lines, s.Service+" "+addr+"\n")
			keys = append(keys, "/"+filepath.Join(plan.I2PDataDir, plan.I2PKeyFile(s.Service)))
		}
	}
	if len(lines) > 0 {
		if err := atomicfile.WriteFileIfChangedIn(node, plan.I2PAddressesPath, []byte(strings.Join(lines, "")), 0o644); err != nil {
			errs = append(errs, err)
		}
	} else if err := removeIfExists(node, plan.I2PAddressesPath); err != nil {
		errs = append(errs, err)
	}
	if err := atomicfile.WriteFileIfChangedIn(r, plan.I2PTunnelsPath, []byte(TunnelsConf(x)), 0o644); err != nil {
		errs = append(errs, err)
	}
	if err := keysOwner(r, keys); err != nil {
		errs = append(errs, err)
	}
	if found, err := enableService(r, "i2pd", true); err != nil {
		errs = append(errs, fmt.Errorf("i2pd: %w", err))
	} else if !found {
		env.Log("nodeinit: i2p: %s has i2pd but neither systemd nor /etc/init.d/i2pd; not enabled", label(where))
	}
	return errors.Join(errs...)
}

// keysOwnerDropIn makes i2pd.service give the key files to its user
// before i2pd starts. Policy chowns them too, but only once the root has
// the user: i2pd's postinst makes it, and in a container that runs at its
// first start, after policy (debroot's start hook), so without this the
// first start's i2pd could not read its keys.
const keysOwnerDropIn = "etc/systemd/system/i2pd.service.d/mkimage-keys.conf"

// keysOwner writes keysOwnerDropIn for keys (absolute paths in the root)
// in a systemd root, and removes it when there are none.
func keysOwner(r *os.Root, keys []string) error {
	if len(keys) == 0 || !hasSystemd(r) {
		return removeIfExists(r, keysOwnerDropIn)
	}
	// "+": as root, whatever User= says; -h: a link in the key's place
	// is not followed.
	conf := fmt.Sprintf("%s[Service]\nExecStartPre=+/bin/chown -h %s:%s %s\n", generated, i2pdUser, i2pdUser, strings.Join(keys, " "))
	return atomicfile.WriteFileIfChangedIn(r, keysOwnerDropIn, []byte(conf), 0o644)
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

// serverKeys returns the address of a service's key file in i2pd's data
// dir in r, making the file first if there is none. An existing file is
// never replaced, not even a broken one: that is an error for a person
// to look at, since replacing it would give the service a new address.
func serverKeys(env Env, r *os.Root, service string, uid, gid int, chown bool) (string, error) {
	p := filepath.Join(plan.I2PDataDir, plan.I2PKeyFile(service))
	b, err := r.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		if b, err = i2p.NewKeys(); err != nil {
			return "", err
		}
		// WriteNewFileIn: a file that appeared meanwhile is not replaced
		// (then it is read below).
		if err = atomicfile.WriteNewFileIn(r, p, b, 0o600); err == nil {
			env.Log("nodeinit: i2p: service %s: new destination keys in %s", service, strings.TrimPrefix(filepath.Join(r.Name(), p), env.Root))
		} else if errors.Is(err, fs.ErrExist) {
			b, err = r.ReadFile(p)
		}
	}
	if err != nil {
		return "", err
	}
	k, err := i2p.Parse(b)
	if err != nil {
		return "", fmt.Errorf("%s: not an i2pd key file i2pd can use (%w); left as it is", filepath.Join(r.Name(), p), err)
	}
	// Every boot, not only after writing: a power cut between writing the
	// file and changing its owner leaves it root's.
	if err := ownFile(r, p, 0o600, uid, gid, chown); err != nil {
		return "", err
	}
	return k.Address, nil
}

// ownedDir makes dir (i2pd's data dir, which its package makes) in r if
// it is missing, owned like the package's.
func ownedDir(r *os.Root, dir string, uid, gid int, chown bool) error {
	if _, err := r.Stat(dir); err == nil {
		return nil
	}
	if err := r.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if chown {
		return r.Chown(dir, uid, gid)
	}
	return nil
}

// ownFile sets the mode and, with chown, the owner of p in r where they
// differ. p must be a regular file: a link there is refused, not
// followed.
func ownFile(r *os.Root, p string, mode os.FileMode, uid, gid int, chown bool) error {
	fi, err := r.Lstat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file (%s)", p, fi.Mode().Type())
	}
	if fi.Mode().Perm() != mode {
		if err := r.Chmod(p, mode); err != nil {
			return err
		}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if chown && ok && (int(st.Uid) != uid || int(st.Gid) != gid) {
		if err := r.Lchown(p, uid, gid); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

// lookupUser reads a user's uid and primary gid from r's etc/passwd (the
// initramfs has its own users, or none). A root without passwd has no
// such user.
func lookupUser(r *os.Root, name string) (uid, gid int, ok bool, err error) {
	f, err := r.Open("etc/passwd")
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

// reportI2P is Report's line for the i2p tunnels, read from the root
// i2pd runs in.
func reportI2P(env Env) (string, bool) {
	x := env.Node.I2P
	r, where, err := reportRoot(env, plan.RunsI2PD)
	if err != nil {
		return fmt.Sprintf("i2p: %v", err), false
	}
	defer r.Close()
	in := inRoot(where)
	if !exists(r, "usr/sbin/i2pd") {
		return fmt.Sprintf("i2p: i2pd not installed in %s (tunnels not served)", label(where)), false
	}
	got, err := r.ReadFile(plan.I2PTunnelsPath)
	switch {
	case err != nil:
		return fmt.Sprintf("i2p tunnels%s MISSING (%v)", in, err), false
	case string(got) != TunnelsConf(x):
		return "i2p tunnels" + in + " differ from the plan", false
	}
	return fmt.Sprintf("i2p: %d server, %d client tunnels%s", len(x.Servers), len(x.Clients), in), true
}
