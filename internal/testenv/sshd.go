package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// SSHD is a real OpenSSH server started for a test, letting root in by
// key only.
type SSHD struct {
	Addr string // the address it listens on
	Port int
	// Dir holds its files: host (its host key), client (a key it
	// accepts), authorized_keys, known_hosts (the host key, as
	// [127.0.0.1]:PORT) and known_hosts_other (another key, same name).
	Dir        string
	Identity   string // Dir/client
	KnownHosts string // Dir/known_hosts
	HostKey    string // the host's public key line, "ssh-ed25519 AAAA... host"
}

// InetdCommand serves one connection on its stdin and stdout with the
// same configuration and keys (sshd -i): a QEMU guestfwd "cmd:" runs it
// for every connection (a guestfwd to a TCP address carries one
// connection only, for the VM's life).
func (s SSHD) InetdCommand() string {
	return "/usr/sbin/sshd -i -f " + filepath.Join(s.Dir, "sshd_config")
}

// StartSSHD starts sshd on addr (a loopback address) and a free port,
// stopped when the test ends; its log is printed if the test failed. It
// skips the test where sshd, ssh-keygen or root is missing. SetEnv
// SHLVL=1 keeps Debian's bash from sourcing root's ~/.bashrc for each
// command (it does when run by sshd at shell level 1): a developer's
// .bashrc can cost seconds a command.
func StartSSHD(t testing.TB, addr string) SSHD {
	t.Helper()
	NeedRoot(t)
	NeedTools(t, "ssh-keygen")
	NeedFile(t, "/usr/sbin/sshd")
	dir := t.TempDir()
	keygen := func(name string) {
		Run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", filepath.Join(dir, name))
	}
	keygen("host")
	keygen("client")
	keygen("otherhost")
	pub, err := os.ReadFile(filepath.Join(dir, "client.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfg := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `Port %d
ListenAddress %s
HostKey %s
AuthorizedKeysFile %s
PermitRootLogin prohibit-password
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PidFile none
SetEnv SHLVL=1
`, port, addr, filepath.Join(dir, "host"), filepath.Join(dir, "authorized_keys")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	log := Start(t, "sshd", exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", cfg))
	hostPort := net.JoinHostPort(addr, fmt.Sprint(port))
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", hostPort)
		if err == nil {
			c.Close()
			break
		}
		if i == 100 {
			t.Fatalf("sshd does not listen on %s: %v\n%s", hostPort, err, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	known := func(name, key string) string {
		p, err := os.ReadFile(filepath.Join(dir, key+".pub"))
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, fmt.Appendf(nil, "[%s]:%d %s", addr, port, p), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	known("known_hosts_other", "otherhost")
	hostKey, err := os.ReadFile(filepath.Join(dir, "host.pub"))
	if err != nil {
		t.Fatal(err)
	}
	return SSHD{Addr: addr, Port: port, Dir: dir, Identity: filepath.Join(dir, "client"),
		KnownHosts: known("known_hosts", "host"), HostKey: strings.TrimSpace(string(hostKey))}
}

// Authorize adds a public key line to the keys the server accepts.
func (s SSHD) Authorize(pub string) error {
	f, err := os.OpenFile(filepath.Join(s.Dir, "authorized_keys"), os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(f, strings.TrimSpace(pub)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
