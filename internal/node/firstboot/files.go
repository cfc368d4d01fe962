package firstboot

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/mkimage/mkimage/internal/atomicfile"
	"github.com/mkimage/mkimage/internal/node/sshkey"

	"github.com/mkimage/mkimage/internal/cluster/plan"
)

func (r *runner) machineID() error {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return err
	}
	return atomicfile.WriteFile(r.path("etc/machine-id"), []byte(hex.EncodeToString(id[:])+"\n"), 0o444)
}

// sshHostKeys writes fresh ed25519 and ECDSA host keys; any keys that came
// with the image are replaced (and RSA/DSA ones removed) so no private key
// is shared between nodes. A key this step wrote before a power cut cut it
// short is kept: its fingerprint was recorded in the state before it was
// written, and a key on the card with that fingerprint, whole, is the
// node's (the image's keys never have it).
func (r *runner) sshHostKeys() error {
	dir := r.path("etc/ssh")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, old := range []string{"rsa", "dsa"} {
		for _, suf := range []string{"", ".pub"} {
			if err := os.Remove(filepath.Join(dir, "ssh_host_"+old+"_key"+suf)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	comment := "root@" + r.id.Plan.Name
	for _, kt := range sshkey.HostTypes {
		base := filepath.Join(dir, "ssh_host_"+kt.Name+"_key")
		if fp, ok := sshkey.ReadPair(base); ok && fp == r.state.HostKeys[kt.Name] {
			r.Log("nodeinit: firstboot: %s kept, written before a power cut (%s)", strings.TrimPrefix(base, r.Root), fp)
			continue
		}
		k, err := kt.Gen(comment)
		if err != nil {
			return err
		}
		if r.state.HostKeys == nil {
			r.state.HostKeys = map[string]string{}
		}
		r.state.HostKeys[kt.Name] = k.Fingerprint()
		if err := r.state.write(r.Root); err != nil {
			return err
		}
		if err := atomicfile.WriteFile(base, k.Private, 0o600); err != nil {
			return err
		}
		if err := atomicfile.WriteFile(base+".pub", k.Public, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (r *runner) hostname() error {
	return atomicfile.WriteFile(r.path("etc/hostname"), []byte(r.id.Plan.Name+"\n"), 0o644)
}

func names(name, domain string) string {
	if domain != "" {
		return name + "." + domain + " " + name
	}
	return name
}

// hosts lists every inventory node, so nodes find each other without DNS.
func (r *runner) hosts() error {
	var b bytes.Buffer
	b.WriteString("# written by nodeinit from the cluster inventory\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	domain := r.Config.Cluster.Domain
	if r.id.Plan.DHCP() {
		fmt.Fprintf(&b, "127.0.1.1\t%s\n", names(r.id.Plan.Name, domain))
	}
	for _, n := range r.Config.Nodes {
		fmt.Fprintf(&b, "%s\t%s\n", n.IP, names(n.Name, domain))
	}
	return atomicfile.WriteFile(r.path("etc/hosts"), b.Bytes(), 0o644)
}

func (r *runner) exists(rel string) bool {
	_, err := os.Lstat(r.path(rel))
	return err == nil
}

// network writes the cluster interface's configuration in the form the
// root's own network stack reads: a systemd-networkd .network file when the
// root has networkd, else /etc/network/interfaces (ifupdown, busybox).
// Only the cluster interface is configured; an uplink (gateway, router)
// keeps whatever the root's overlay gives it.
func (r *runner) network() error {
	p := r.id.Plan
	if r.id.Iface == "" {
		// Named by a serial before any NIC showed up.
		return errors.New("no network interface to configure")
	}
	if r.exists("lib/systemd/systemd-networkd") || r.exists("usr/lib/systemd/systemd-networkd") {
		return atomicfile.WriteFile(r.path("etc/systemd/network/10-cluster.network"), []byte(networkdFile(p)), 0o644)
	}
	stanza := interfacesStanza(p, r.id.Iface)
	main := r.path("etc/network/interfaces")
	old, err := os.ReadFile(main)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if bytes.Contains(old, []byte("interfaces.d")) && r.exists("etc/network/interfaces.d") {
		return atomicfile.WriteFile(r.path("etc/network/interfaces.d/cluster"), []byte(stanza), 0o644)
	}
	if len(old) > 0 && !bytes.HasPrefix(old, []byte(generated)) {
		if err := atomicfile.WriteFile(main+".orig", old, 0o644); err != nil {
			return err
		}
	}
	if err := atomicfile.WriteFile(main, []byte(generated+"auto lo\niface lo inet loopback\n\n"+stanza), 0o644); err != nil {
		return err
	}
	return r.resolvConf()
}

const generated = plan.Generated

func networkdFile(p plan.Plan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s[Match]\nMACAddress=%s\n\n[Network]\n", generated, p.MAC)
	if p.DHCP() {
		b.WriteString("DHCP=ipv4\n")
		return b.String()
	}
	fmt.Fprintf(&b, "Address=%s\n", p.CIDR())
	if p.Gateway != "" {
		fmt.Fprintf(&b, "Gateway=%s\n", p.Gateway)
	}
	for _, d := range p.DNS {
		fmt.Fprintf(&b, "DNS=%s\n", d)
	}
	if p.Domain != "" {
		fmt.Fprintf(&b, "Domains=%s\n", p.Domain)
	}
	if p.IPForward {
		b.WriteString("IPForward=ipv4\n")
	}
	for _, rt := range p.Routes {
		if rt.Dev != "" || rt.Via == "" {
			continue // another interface's route: applied by policy at boot
		}
		fmt.Fprintf(&b, "\n[Route]\nDestination=%s\nGateway=%s\n", strings.Replace(rt.Destination, "default", "0.0.0.0/0", 1), rt.Via)
	}
	return b.String()
}

func interfacesStanza(p plan.Plan, iface string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "auto %s\n", iface)
	if p.DHCP() {
		fmt.Fprintf(&b, "iface %s inet dhcp\n", iface)
		return b.String()
	}
	// address + netmask rather than CIDR: busybox ifup wants the netmask.
	pr := netip.MustParsePrefix(p.CIDR())
	fmt.Fprintf(&b, "iface %s inet static\n\taddress %s\n\tnetmask %s\n", iface, p.IP, netmask(pr.Bits()))
	if p.Gateway != "" {
		fmt.Fprintf(&b, "\tgateway %s\n", p.Gateway)
	}
	for _, rt := range p.Routes {
		if rt.Dev != "" || rt.Via == "" {
			continue
		}
		fmt.Fprintf(&b, "\tup ip route replace %s via %s dev %s\n", rt.Destination, rt.Via, iface)
	}
	return b.String()
}

func netmask(bits int) string {
	m := ^uint32(0) << (32 - bits)
	if bits == 0 {
		m = 0
	}
	return fmt.Sprintf("%d.%d.%d.%d", m>>24, m>>16&255, m>>8&255, m&255)
}

// resolvConf writes /etc/resolv.conf for ifupdown roots, unless it is a
// symlink (resolvconf, systemd-resolved manage it then).
func (r *runner) resolvConf() error {
	conf := r.id.Plan.ResolvConf()
	if conf == nil {
		return nil
	}
	if fi, err := os.Lstat(r.path("etc/resolv.conf")); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return nil
	}
	return atomicfile.WriteFile(r.path("etc/resolv.conf"), conf, 0o644)
}

// authorizedKeys adds the cluster's keys to root's authorized_keys,
// keeping lines already there.
func (r *runner) authorizedKeys() error {
	keys := r.Config.Cluster.SSHAuthorizedKeys
	if len(keys) == 0 {
		return nil
	}
	dir := r.path("root/.ssh")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	file := filepath.Join(dir, "authorized_keys")
	old, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	out := old
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	have := map[string]bool{}
	for _, l := range strings.Split(string(old), "\n") {
		have[strings.TrimSpace(l)] = true
	}
	for _, k := range keys {
		if !have[k] {
			out = append(out, k+"\n"...)
		}
	}
	return atomicfile.WriteFile(file, out, 0o600)
}

func (r *runner) timezone() error {
	tz := r.Config.Cluster.Timezone
	if tz == "" {
		return nil
	}
	if err := atomicfile.WriteFile(r.path("etc/timezone"), []byte(tz+"\n"), 0o644); err != nil {
		return err
	}
	zone := "/usr/share/zoneinfo/" + tz
	if _, err := os.Stat(r.path(zone)); err != nil {
		r.Log("nodeinit: firstboot: %s not in the root; /etc/localtime left alone", zone)
		return nil
	}
	return atomicfile.Symlink(zone, r.path("etc/localtime"))
}
