package cluster

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"

	"github.com/mkimage/mkimage/internal/cluster/plan"
	"github.com/mkimage/mkimage/internal/update/registry"
)

// The value types below implement encoding.TextUnmarshaler so that a bad
// value fails inside the TOML decoder, which then reports the key's line.

// Roles are a fixed set: each one means something to policy (a gateway
// masquerades, a router filters), so a free-form role would be a typo
// waiting to happen.
var Roles = []string{"worker", "gateway", "router"}

// Governors are the cpufreq governors mainline kernels ship.
var Governors = []string{"performance", "ondemand", "powersave", "schedutil", "conservative"}

// Role is one of Roles.
type Role string

func (r *Role) UnmarshalText(b []byte) error {
	return oneOf((*string)(r), "role", string(b), Roles)
}

// Governor is one of Governors.
type Governor string

func (g *Governor) UnmarshalText(b []byte) error {
	return oneOf((*string)(g), "governor", string(b), Governors)
}

// Action is a FORWARD rule verdict.
type Action string

func (a *Action) UnmarshalText(b []byte) error {
	return oneOf((*string)(a), "action", string(b), []string{"accept", "drop", "reject"})
}

// Policy is a chain policy.
type Policy string

func (a *Policy) UnmarshalText(b []byte) error {
	return oneOf((*string)(a), "policy", string(b), []string{"accept", "drop"})
}

// Netboot is a node's netboot mode.
type Netboot string

func (n *Netboot) UnmarshalText(b []byte) error {
	return oneOf((*string)(n), "netboot mode", string(b), []string{"diskless", "install"})
}

// LXCNet is the default container network type.
type LXCNet string

func (n *LXCNet) UnmarshalText(b []byte) error {
	return oneOf((*string)(n), "container network", string(b), []string{"veth", "empty", "none"})
}

func oneOf(dst *string, what, v string, allowed []string) error {
	for _, a := range allowed {
		if v == a {
			*dst = v
			return nil
		}
	}
	return fmt.Errorf("unknown %s %q (expected %s)", what, v, strings.Join(allowed, ", "))
}

// MAC is an Ethernet address, kept in lower-case colon form.
type MAC string

func (m *MAC) UnmarshalText(b []byte) error {
	hw, err := net.ParseMAC(string(b))
	if err != nil || len(hw) != 6 || !strings.Contains(string(b), ":") {
		return fmt.Errorf("malformed MAC %q (expected six hex bytes like 00:1e:06:aa:bb:cc)", b)
	}
	if hw[0]&1 != 0 {
		return fmt.Errorf("MAC %q is a multicast address (expected a unicast MAC)", b)
	}
	*m = MAC(hw.String())
	return nil
}

var serialRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._:/+-]{0,63}$`)

// SerialNumber is a board's device tree serial-number, normalised as
// plan.NormalizeSerialNumber does (lower case, no "0x").
type SerialNumber string

func (s *SerialNumber) UnmarshalText(b []byte) error {
	v := plan.NormalizeSerialNumber(string(b))
	if !serialRE.MatchString(v) {
		return fmt.Errorf("malformed serial_number %q (expected the board's device tree serial-number, like \"0a1b2c3d4e5f6789\": letters, digits and . _ : / + -, at most 64)", b)
	}
	if strings.Trim(v, "0") == "" {
		return fmt.Errorf("serial_number %q is all zeros (expected a board's own serial: zeros are what boards without one report)", b)
	}
	*s = SerialNumber(v)
	return nil
}

// UnmarshalTOML takes only a string: a bare TOML number would reach
// UnmarshalText as decimal, and 0x1234 would silently become "4660".
func (s *SerialNumber) UnmarshalTOML(v any) error {
	return quoted(v, "serial_number", "\"0a1b2c3d4e5f6789\"", s.UnmarshalText)
}

// CardSerial is an SD/eMMC card's CID serial, kept in the kernel's form
// "0x1234abcd" (plan.NormalizeCardSerial).
type CardSerial string

func (c *CardSerial) UnmarshalText(b []byte) error {
	v, ok := plan.NormalizeCardSerial(string(b))
	if !ok {
		return fmt.Errorf("malformed card_serial %q (expected the card's 32-bit serial in hex, as /sys/block/mmcblk0/device/serial shows it: \"0x1234abcd\")", b)
	}
	if v == "0x00000000" {
		return fmt.Errorf("card_serial %q is zero (expected a card's own serial: zero is what cards without one report)", b)
	}
	*c = CardSerial(v)
	return nil
}

// UnmarshalTOML takes only a string, as SerialNumber's does.
func (c *CardSerial) UnmarshalTOML(v any) error {
	return quoted(v, "card_serial", "\"0x1234abcd\"", c.UnmarshalText)
}

// quoted passes a TOML string value to text; any other type is an error
// that shows the key quoted.
func quoted(v any, key, example string, text func([]byte) error) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("%s is a TOML %T, not a string (expected quotes, like %s = %s)", key, v, key, example)
	}
	return text([]byte(s))
}

// Addr is an IPv4 address.
type Addr struct{ netip.Addr }

func (a *Addr) UnmarshalText(b []byte) error {
	ip, err := netip.ParseAddr(string(b))
	if err != nil || !ip.Is4() {
		return fmt.Errorf("malformed IPv4 address %q (expected like 192.168.142.11)", b)
	}
	a.Addr = ip
	return nil
}

// Addr6 is an IPv6 unicast address that can be pinned (see unicast6).
type Addr6 struct{ netip.Addr }

func (a *Addr6) UnmarshalText(b []byte) error {
	ip, err := netip.ParseAddr(string(b))
	if err != nil || !ip.Is6() || ip.Is4In6() || ip.Zone() != "" {
		return fmt.Errorf("malformed IPv6 address %q (expected like fd00:5::10)", b)
	}
	if err := unicast6(ip); err != nil {
		return fmt.Errorf("IPv6 address %q %w", b, err)
	}
	a.Addr = ip
	return nil
}

// unicast6 refuses the IPv6 addresses a config cannot pin: a link-local
// address is the kernel's own choice on every link (and can differ
// between boots), multicast, loopback and :: are not an interface's
// address at all.
func unicast6(ip netip.Addr) error {
	switch {
	case ip.IsLinkLocalUnicast():
		return errors.New("is link-local (expected a global or unique local address, like fd00:5::10: the kernel makes link-local addresses itself)")
	case ip.IsMulticast():
		return errors.New("is multicast (expected a unicast address, like fd00:5::10)")
	case ip.IsLoopback() || ip.IsUnspecified():
		return errors.New("is not an interface address (expected a unicast address, like fd00:5::10)")
	}
	return nil
}

// AddrPort is an IPv4 or IPv6 address with a port: "192.168.0.5:80",
// "[2001:db8::10]:8080".
type AddrPort struct{ netip.AddrPort }

func (a *AddrPort) UnmarshalText(b []byte) error {
	ap, err := netip.ParseAddrPort(string(b))
	if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" || ap.Addr().IsUnspecified() || ap.Addr().Is4In6() {
		return fmt.Errorf("malformed address and port %q (expected like 192.168.0.5:80 or [2001:db8::10]:8080)", b)
	}
	a.AddrPort = ap
	return nil
}

// Prefix is an IPv4 CIDR. Masked reports whether host bits must be zero:
// a subnet ("192.168.142.0/24") vs an interface address ("10.0.3.1/24").
type Prefix struct{ netip.Prefix }

func (p *Prefix) UnmarshalText(b []byte) error {
	pr, err := netip.ParsePrefix(string(b))
	if err != nil || !pr.Addr().Is4() {
		return fmt.Errorf("malformed IPv4 CIDR %q (expected like 192.168.142.0/24)", b)
	}
	p.Prefix = pr
	return nil
}

// Prefix6 is an IPv6 interface address with its prefix length, like
// fd00:5::1/64; the address is one unicast6 accepts.
type Prefix6 struct{ netip.Prefix }

func (p *Prefix6) UnmarshalText(b []byte) error {
	pr, err := netip.ParsePrefix(string(b))
	if err != nil || !pr.Addr().Is6() || pr.Addr().Is4In6() {
		return fmt.Errorf("malformed IPv6 CIDR %q (expected like fd00:5::1/64)", b)
	}
	if err := unicast6(pr.Addr()); err != nil {
		return fmt.Errorf("IPv6 CIDR %q %w", b, err)
	}
	p.Prefix = pr
	return nil
}

// Match is a CIDR with optional negation: "192.168.0.0/16" or
// "!192.168.0.0/16". A plain address means /32. Host bits must be zero.
type Match struct {
	Not    bool
	Prefix netip.Prefix
}

func (m *Match) UnmarshalText(b []byte) error {
	s := string(b)
	not := strings.HasPrefix(s, "!")
	s = strings.TrimSpace(strings.TrimPrefix(s, "!"))
	if !strings.Contains(s, "/") {
		s += "/32"
	}
	pr, err := netip.ParsePrefix(s)
	if err != nil || !pr.Addr().Is4() {
		return fmt.Errorf("malformed CIDR %q (expected like 192.168.0.0/16 or !192.168.0.0/16)", b)
	}
	if pr.Masked() != pr {
		return fmt.Errorf("CIDR %q has host bits set (expected %s)", b, pr.Masked())
	}
	*m = Match{Not: not, Prefix: pr}
	return nil
}

func (m Match) String() string {
	if !m.Prefix.IsValid() {
		return ""
	}
	if m.Not {
		return "!" + m.Prefix.String()
	}
	return m.Prefix.String()
}

// Dest is a route destination: a CIDR or "default".
type Dest struct{ netip.Prefix }

func (d *Dest) UnmarshalText(b []byte) error {
	if string(b) == "default" {
		d.Prefix = netip.MustParsePrefix("0.0.0.0/0")
		return nil
	}
	var p Match
	if err := p.UnmarshalText(b); err != nil || p.Not {
		return fmt.Errorf("malformed route destination %q (expected a CIDR like 172.16.0.0/12 or \"default\")", b)
	}
	d.Prefix = p.Prefix
	return nil
}

func (d Dest) String() string {
	if d.Bits() == 0 {
		return "default"
	}
	return d.Prefix.String()
}

// Iface is a network interface name.
type Iface string

func (i *Iface) UnmarshalText(b []byte) error {
	s := string(b)
	if len(s) == 0 || len(s) > 15 || strings.ContainsAny(s, "/ \t\n:!") || s == "." || s == ".." {
		return fmt.Errorf("bad interface name %q (expected 1-15 characters, no '/', ':', '!' or spaces)", b)
	}
	*i = Iface(s)
	return nil
}

var hostnameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Hostname is one DNS label (lower case).
type Hostname string

func (h *Hostname) UnmarshalText(b []byte) error {
	if !hostnameRE.Match(b) {
		return fmt.Errorf("bad name %q (expected a lower-case DNS label: a-z, 0-9, '-', at most 63)", b)
	}
	*h = Hostname(b)
	return nil
}

var domainRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)

// Domain is a DNS domain name.
type Domain string

func (d *Domain) UnmarshalText(b []byte) error {
	if len(b) > 253 || !domainRE.Match(b) {
		return fmt.Errorf("bad domain %q (expected lower-case labels separated by dots)", b)
	}
	*d = Domain(b)
	return nil
}

var tzRE = regexp.MustCompile(`^(UTC|[A-Z][A-Za-z_+-]*(/[A-Za-z0-9_+-]+){0,2})$`)

// Timezone is a tz database name like "Europe/Berlin" or "UTC". Only the
// form is checked: the build host's zoneinfo need not match the root's.
type Timezone string

func (t *Timezone) UnmarshalText(b []byte) error {
	if !tzRE.Match(b) || strings.Contains(string(b), "..") {
		return fmt.Errorf("bad timezone %q (expected a tz name like Europe/Berlin or UTC)", b)
	}
	*t = Timezone(b)
	return nil
}

var sshKeyRE = regexp.MustCompile(`^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,2}( [^\n]*)?$`)

// SSHKey is one authorized_keys line (no options).
type SSHKey string

func (k *SSHKey) UnmarshalText(b []byte) error {
	if !sshKeyRE.Match(b) {
		return fmt.Errorf("bad SSH public key %.40q (expected \"ssh-ed25519 AAAA... comment\")", b)
	}
	*k = SSHKey(b)
	return nil
}

// ContainerRootfs is a container's root source: "oci:" and an image
// reference (host[:port]/repo[:tag] or ...@sha256:HEX, the registry
// always named: a build never guesses where a root comes from), or
// "debian:SUITE" (a root built from that suite's packages).
type ContainerRootfs struct {
	Scheme string       // "oci" or "debian"
	Ref    registry.Ref // oci
	Suite  string       // debian
}

var suiteRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

func (r *ContainerRootfs) UnmarshalText(b []byte) error {
	scheme, rest, ok := strings.Cut(string(b), ":")
	switch {
	case ok && scheme == "oci":
		ref, err := registry.ParseRef(rest)
		if err != nil {
			return fmt.Errorf("rootfs %q: %w", b, err)
		}
		*r = ContainerRootfs{Scheme: scheme, Ref: ref}
	case ok && scheme == "debian":
		if !suiteRE.MatchString(rest) {
			return fmt.Errorf("rootfs %q: bad Debian suite %q (expected like debian:bookworm)", b, rest)
		}
		*r = ContainerRootfs{Scheme: scheme, Suite: rest}
	default:
		return fmt.Errorf("rootfs %q: unknown scheme (expected \"oci:REGISTRY/REPO:TAG\", \"oci:REGISTRY/REPO@sha256:...\" or \"debian:SUITE\")", b)
	}
	return nil
}

// String gives the value back as the config spells it ("" when unset).
func (r ContainerRootfs) String() string {
	switch r.Scheme {
	case "oci":
		return "oci:" + r.Ref.String()
	case "debian":
		return "debian:" + r.Suite
	}
	return ""
}
