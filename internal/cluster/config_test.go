package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mkimage/mkimage/internal/cluster/plan"
)

const base = `[cluster]
name = "t"
[network]
subnet = "192.168.142.0/24"
gateway = "192.168.142.1"
`

// idNode is a [[node]] named by key (one or more "key = value" lines), at
// 192.168.142.<host>; its first key is on the table's third line.
func idNode(name, key string, host int) string {
	return fmt.Sprintf("[[node]]\nname = %q\n%s\nip = \"192.168.142.%d\"\nrole = \"worker\"\n", name, key, host)
}

func TestParseErrors(t *testing.T) {
	node := func(name, mac, ip, role string) string {
		return "[[node]]\nname = \"" + name + "\"\nmac = \"" + mac + "\"\nip = \"" + ip + "\"\nrole = \"" + role + "\"\n"
	}
	ok1 := node("a", "00:1e:06:00:00:01", "192.168.142.11", "worker") // lines 6-10
	// [lxc] with address6 on line 14 (lines 11-14 after ok1), and a
	// container on node a whose ip6 is on its table's fifth line.
	lxc6 := func(address6 string) string {
		return "[lxc]\nbridge = \"lxcbr0\"\naddress = \"10.0.3.1/24\"\naddress6 = \"" + address6 + "\"\n"
	}
	ct6 := func(name, ip, ip6 string) string {
		return "[[lxc.container]]\nname = \"" + name + "\"\nnode = \"a\"\nip = \"" + ip + "\"\nip6 = \"" + ip6 + "\"\n"
	}
	for _, tc := range []struct {
		name, src, want string
	}{
		{"unknown top key", "colour = 1\n" + base, "c.toml:1: unknown key \"colour\" at top level (expected one of: cluster, network, power, lxc, backup, rollout, service, node, i2p)"},
		{"unknown nested key", base + "ip_forwad = true\n", "c.toml:6: unknown key \"ip_forwad\" in [network] (expected one of: subnet, gateway, dns, ip_forward, route, role)"},
		{"unknown role table", base + "[network.role.wroker]\nip_forward = true\n", "c.toml:6: unknown key \"wroker\" in [network.role] (expected one of: worker, gateway, router)"},
		{"unknown node key", base + ok1 + "colour = \"red\"\n", "c.toml:11: unknown key \"colour\" in [node]"},
		{"syntax", base + "name = \n", "c.toml:6: "},
		{"wrong type", base + "[power]\nworker = 3\n", "c.toml:7: unknown governor \"3\""},
		{"wrong type bool", base + "[lxc]\nlxcfs = \"yes\"\n", "c.toml:7: incompatible types"},
		{"bad governor", base + "[power]\nworker = \"turbo\"\n", "c.toml:7: unknown governor \"turbo\" (expected performance, ondemand, powersave, schedutil, conservative)"},
		{"bad role", base + node("a", "00:1e:06:00:00:01", "192.168.142.11", "boss"), "c.toml:10: unknown role \"boss\" (expected worker, gateway, router)"},
		{"bad mac", base + node("a", "00:1e:06:00:01", "192.168.142.11", "worker"), "c.toml:8: malformed MAC \"00:1e:06:00:01\""},
		{"multicast mac", base + node("a", "01:1e:06:00:00:01", "192.168.142.11", "worker"), "c.toml:8: MAC \"01:1e:06:00:00:01\" is a multicast"},
		{"bad cidr", strings.Replace(base, "142.0/24", "142.0/33", 1), "c.toml:4: malformed IPv4 CIDR \"192.168.142.0/33\""},
		{"subnet host bits", strings.Replace(base, "142.0/24", "142.5/24", 1), "c.toml:4: subnet 192.168.142.5/24 has host bits set (expected 192.168.142.0/24)"},
		{"gateway outside", strings.Replace(base, "\"192.168.142.1\"", "\"192.168.143.1\"", 1), "c.toml:5: gateway 192.168.143.1 is outside the subnet 192.168.142.0/24"},
		{"ip outside", base + node("a", "00:1e:06:00:00:01", "192.168.1.11", "worker"), "c.toml:9: node a: IP 192.168.1.11 is outside the subnet 192.168.142.0/24"},
		{"ip is broadcast", base + node("a", "00:1e:06:00:00:01", "192.168.142.255", "worker"), "c.toml:9: node a: IP 192.168.142.255 is outside"},
		{"dup name", base + ok1 + node("a", "00:1e:06:00:00:02", "192.168.142.12", "worker"), "c.toml:12: duplicate node name \"a\" (also node 1, line 7)"},
		{"dup mac", base + ok1 + node("b", "00:1E:06:00:00:01", "192.168.142.12", "worker"), "c.toml:13: duplicate MAC 00:1e:06:00:00:01 (node a has it too)"},
		{"dup ip", base + ok1 + node("b", "00:1e:06:00:00:02", "192.168.142.11", "worker"), "c.toml:14: duplicate IP 192.168.142.11 (also node \"a\", line 9)"},
		{"missing mac", base + "[[node]]\nname = \"a\"\nip = \"192.168.142.11\"\nrole = \"worker\"\n", "c.toml:6: node a has no mac"},
		{"missing subnet", "[cluster]\nname = \"t\"\n[network]\n", "c.toml:3: [network] subnet is missing"},
		{"negated cidr bad", base + "[network.role.router]\n[[network.role.router.forward]]\ndestination = \"!192.168.0.0/160\"\naction = \"drop\"\n", "c.toml:8: malformed CIDR \"!192.168.0.0/160\""},
		{"bad action", base + "[network.role.router]\n[[network.role.router.forward]]\naction = \"allow\"\n", "c.toml:8: unknown action \"allow\" (expected accept, drop, reject)"},
		{"no action", base + "[network.role.router]\n[[network.role.router.forward]]\nin = \"eth0\"\n", "c.toml:7: forward rule has no action"},
		{"route no nexthop", base + "[[network.route]]\ndestination = \"10.0.0.0/8\"\n", "c.toml:6: route to 10.0.0.0/8 has neither via nor dev"},
		{"route via outside", base + "[[network.route]]\ndestination = \"10.0.0.0/8\"\nvia = \"10.1.1.1\"\n", "c.toml:8: route via 10.1.1.1: not in the subnet"},
		{"container ip outside", base + ok1 + "[lxc]\nbridge = \"lxcbr0\"\naddress = \"10.0.3.1/24\"\n[[lxc.container]]\nname = \"c\"\nnode = \"a\"\nip = \"10.0.4.2\"\n", "c.toml:17: container \"c\": IP 10.0.4.2 is outside the LXC network 10.0.3.0/24"},
		{"container on bridge ip", base + ok1 + "[lxc]\nbridge = \"lxcbr0\"\naddress = \"10.0.3.1/24\"\n[[lxc.container]]\nname = \"c\"\nnode = \"a\"\nip = \"10.0.3.1\"\n", "c.toml:17: container \"c\": IP 10.0.3.1 is outside the LXC network 10.0.3.0/24 or is the bridge's own address"},
		{"container unknown node", base + ok1 + "[lxc]\nbridge = \"lxcbr0\"\naddress = \"10.0.3.1/24\"\n[[lxc.container]]\nname = \"c\"\nnode = \"zz\"\nip = \"10.0.3.2\"\n", "c.toml:16: container \"c\": node \"zz\" is not in the inventory"},
		{"container rootfs scheme", base + ok1 + "[lxc]\nbridge = \"lxcbr0\"\naddress = \"10.0.3.1/24\"\n[[lxc.container]]\nname = \"c\"\nnode = \"a\"\nip = \"10.0.3.2\"\nrootfs = \"docker:alpine\"\n", "c.toml:18: rootfs \"docker:alpine\": unknown scheme (expected \"oci:REGISTRY/REPO:TAG\""},
		{"container rootfs no registry", base + ok1 + "[lxc]\nbridge = \"lxcbr0\"\naddress = \"10.0.3.1/24\"\n[[lxc.container]]\nname = \"c\"\nnode = \"a\"\nip = \"10.0.3.2\"\nrootfs = \"oci:alpine:3\"\n", "c.toml:18: rootfs \"oci:alpine:3\": registry reference \"alpine:3\": it does not start with a registry host"},
		{"container rootfs bad digest", base + ok1 + "[lxc]\nbridge = \"lxcbr0\"\naddress = \"10.0.3.1/24\"\n[[lxc.container]]\nname = \"c\"\nnode = \"a\"\nip = \"10.0.3.2\"\nrootfs = \"oci:r.example/a@sha256:12\"\n", "c.toml:18: rootfs \"oci:r.example/a@sha256:12\": registry reference"},
		{"container debian bad package name", base + ok1 + "[lxc]\nbridge = \"lxcbr0\"\naddress = \"10.0.3.1/24\"\n[[lxc.container]]\nname = \"c\"\nnode = \"a\"\nip = \"10.0.3.2\"\nrootfs = \"debian:bookworm\"\npackages = [\"nginx\", \"Nginx\"]\n", "c.toml:19: container \"c\": package \"Nginx\" is not a Debian package name (expected lower-case letters"},
		{"container debian package with arch", base + ok1 + "[lxc]\nbridge = \"lxcbr0\"\naddress = \"10.0.3.1/24\"\n[[lxc.container]]\nname = \"c\"\nnode = \"a\"\nip = \"10.0.3.2\"\nrootfs = \"debian:bookworm\"\npackages = [\"nginx:amd64\"]\n", "c.toml:19: container \"c\": package \"nginx:amd64\" is not a Debian package name"},
		{"container debian one-letter package", base + ok1 + "[lxc]\nbridge = \"lxcbr0\"\naddress = \"10.0.3.1/24\"\n[[lxc.container]]\nname = \"c\"\nnode = \"a\"\nip = \"10.0.3.2\"\nrootfs = \"debian:bookworm\"\npackages = [\"x\"]\n", "c.toml:19: container \"c\": package \"x\" is not a Debian package name"},
		{"container debian package with blank", base + ok1 + "[lxc]\nbridge = \"lxcbr0\"\naddress = \"10.0.3.1/24\"\n[[lxc.container]]\nname = \"c\"\nnode = \"a\"\nip = \"10.0.3.2\"\nrootfs = \"debian:bookworm\"\npackages = [\"nginx curl\"]\n", "c.toml:19: container \"c\": package \"nginx curl\" is not a Debian package name"},
		{"container debian package starting with dash", base + ok1 + "[lxc]\nbridge = \"lxcbr0\"\naddress = \"10.0.3.1/24\"\n[[lxc.container]]\nname = \"c\"\nnode = \"a\"\nip = \"10.0.3.2\"\nrootfs = \"debian:bookworm\"\npackages = [\"-x\"]\n", "c.toml:19: container \"c\": package \"-x\" is not a Debian package name"},
		{"container debian bad suite", base + ok1 + "[lxc]\nbridge = \"lxcbr0\"\naddress = \"10.0.3.1/24\"\n[[lxc.container]]\nname = \"c\"\nnode = \"a\"\nip = \"10.0.3.2\"\nrootfs = \"debian:Bookworm\"\n", "c.toml:18: rootfs \"debian:Bookworm\": bad Debian suite \"Bookworm\" (expected like debian:bookworm)"},
		{"container debian no suite", base + ok1 + "[lxc]\nbridge = \"lxcbr0\"\naddress = \"10.0.3.1/24\"\n[[lxc.container]]\nname = \"c\"\nnode = \"a\"\nip = \"10.0.3.2\"\nrootfs = \"debian:\"\n", "c.toml:18: rootfs \"debian:\": bad Debian suite \"\""},
		{"container debian suite with path", base + ok1 + "[lxc]\nbridge = \"lxcbr0\"\naddress = \"10.0.3.1/24\"\n[[lxc.container]]\nname = \"c\"\nnode = \"a\"\nip = \"10.0.3.2\"\nrootfs = \"debian:../bookworm\"\n", "c.toml:18: rootfs \"debian:../bookworm\": bad Debian suite"},
		{"container packages without rootfs", base + ok1 + "[lxc]\nbridge = \"lxcbr0\"\naddress = \"10.0.3.1/24\"\n[[lxc.container]]\nname = \"c\"\nnode = \"a\"\nip = \"10.0.3.2\"\npackages = [\"nginx\"]\n", "c.toml:18: container \"c\": packages go with rootfs = \"debian:SUITE\" only"},
		{"container packages without debian", base + ok1 + "[lxc]\nbridge = \"lxcbr0\"\naddress = \"10.0.3.1/24\"\n[[lxc.container]]\nname = \"c\"\nnode = \"a\"\nip = \"10.0.3.2\"\nrootfs = \"oci:r.example/a:1\"\npackages = [\"nginx\"]\n", "c.toml:19: container \"c\": packages go with rootfs = \"debian:SUITE\" only"},
		{"container rootfs no node", base + ok1 + "[lxc]\nbridge = \"lxcbr0\"\naddress = \"10.0.3.1/24\"\n[[lxc.container]]\nname = \"c\"\nip = \"10.0.3.2\"\nrootfs = \"oci:r.example/a:1\"\n", "c.toml:14: container \"c\" has no node"},
		{"address6 malformed", base + ok1 + lxc6("10.0.3.1/24"), "c.toml:14: malformed IPv6 CIDR \"10.0.3.1/24\" (expected like fd00:5::1/64)"},
		{"address6 link-local", base + ok1 + lxc6("fe80::1/64"), "c.toml:14: IPv6 CIDR \"fe80::1/64\" is link-local"},
		{"address6 multicast", base + ok1 + lxc6("ff02::1/64"), "c.toml:14: IPv6 CIDR \"ff02::1/64\" is multicast"},
		{"address6 anycast", base + ok1 + lxc6("fd00:5::/64"), "c.toml:14: [lxc] address6 fd00:5::/64 is the prefix's Subnet-Router anycast address, not a host address"},
		{"container ip6 malformed", base + ok1 + lxc6("fd00:5::1/64") + ct6("c", "10.0.3.2", "10.0.3.2"), "c.toml:19: malformed IPv6 address \"10.0.3.2\" (expected like fd00:5::10)"},
		{"container ip6 with zone", base + ok1 + lxc6("fd00:5::1/64") + ct6("c", "10.0.3.2", "fd00:5::2%eth0"), "c.toml:19: malformed IPv6 address \"fd00:5::2%eth0\""},
		{"container ip6 link-local", base + ok1 + lxc6("fd00:5::1/64") + ct6("c", "10.0.3.2", "fe80::2"), "c.toml:19: IPv6 address \"fe80::2\" is link-local (expected a global or unique local address"},
		{"container ip6 multicast", base + ok1 + lxc6("fd00:5::1/64") + ct6("c", "10.0.3.2", "ff02::2"), "c.toml:19: IPv6 address \"ff02::2\" is multicast"},
		{"container ip6 loopback", base + ok1 + lxc6("fd00:5::1/64") + ct6("c", "10.0.3.2", "::1"), "c.toml:19: IPv6 address \"::1\" is not an interface address"},
		{"container ip6 without address6", base + ok1 + "[lxc]\nbridge = \"lxcbr0\"\naddress = \"10.0.3.1/24\"\n" + ct6("c", "10.0.3.2", "fd00:5::2"), "c.toml:18: container \"c\": ip6 fd00:5::2 needs [lxc] address6"},
		{"container ip6 outside", base + ok1 + lxc6("fd00:5::1/64") + ct6("c", "10.0.3.2", "fd00:6::2"), "c.toml:19: container \"c\": IPv6 address fd00:6::2 is outside the LXC IPv6 network fd00:5::/64 or is the bridge's own address"},
		{"container ip6 on bridge ip6", base + ok1 + lxc6("fd00:5::1/64") + ct6("c", "10.0.3.2", "fd00:5::1"), "c.toml:19: container \"c\": IPv6 address fd00:5::1 is outside the LXC IPv6 network fd00:5::/64 or is the bridge's own address"},
		{"container ip6 anycast", base + ok1 + lxc6("fd00:5::1/64") + ct6("c", "10.0.3.2", "fd00:5::"), "c.toml:19: container \"c\": IPv6 address fd00:5:: is outside"},
		{"dup container ip6", base + ok1 + lxc6("fd00:5::1/64") + ct6("c", "10.0.3.2", "fd00:5::2") + ct6("d", "10.0.3.3", "fd00:5:0:0::2"), "c.toml:24: duplicate container IPv6 address fd00:5::2 (also container \"c\")"},
		{"lxc overlaps subnet", base + "[lxc]\nbridge = \"lxcbr0\"\naddress = \"192.168.142.200/25\"\n", "c.toml:8: LXC network 192.168.142.128/25 overlaps the cluster subnet 192.168.142.0/24"},
		{"bad schedule", base + "[backup]\nschedule = \"every tuesday\"\nkeep = 3\n", "c.toml:7: bad schedule \"every tuesday\""},
		{"bad schedule time", base + "[backup]\nschedule = \"daily 25:00\"\nkeep = 3\n", "c.toml:7: bad time in schedule"},
		{"bad keep", base + "[backup]\nschedule = \"daily\"\nkeep = 0\n", "c.toml:8: [backup] keep = 0 (expected a count from 1 to 10000)"},
		{"backup target bad host", base + "[backup]\nschedule = \"daily\"\nkeep = 3\n[backup.target]\nhost = \"root\"\ndir = \"/srv/b\"\nhost_keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB\"]\n", "c.toml:10: [backup.target] host \"root\" (expected user@host"},
		{"backup target host option", base + "[backup]\nschedule = \"daily\"\nkeep = 3\n[backup.target]\nhost = \"-oProxyCommand=x@h\"\ndir = \"/srv/b\"\nhost_keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB\"]\n", "c.toml:10: [backup.target] host \"-oProxyCommand=x@h\""},
		{"backup target node without ip", base + "[backup]\nschedule = \"daily\"\nkeep = 3\n[backup.target]\nhost = \"b@a\"\ndir = \"/srv/b\"\nhost_keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB\"]\n[[node]]\nname = \"a\"\nmac = \"00:1e:06:00:00:01\"\n", "c.toml:10: [backup.target] host \"b@a\" names node a, which has no ip"},
		{"backup target bad port", base + "[backup]\nschedule = \"daily\"\nkeep = 3\n[backup.target]\nhost = \"b@h\"\nport = 70000\ndir = \"/srv/b\"\nhost_keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB\"]\n", "c.toml:11: [backup.target] port = 70000"},
		{"backup target relative dir", base + "[backup]\nschedule = \"daily\"\nkeep = 3\n[backup.target]\nhost = \"b@h\"\ndir = \"srv/b\"\nhost_keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB\"]\n", "c.toml:11: [backup.target] dir \"srv/b\""},
		{"backup target root dir", base + "[backup]\nschedule = \"daily\"\nkeep = 3\n[backup.target]\nhost = \"b@h\"\ndir = \"/\"\nhost_keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB\"]\n", "c.toml:11: [backup.target] dir \"/\""},
		{"backup target negative keep", base + "[backup]\nschedule = \"daily\"\nkeep = 3\n[backup.target]\nhost = \"b@h\"\ndir = \"/srv/b\"\nkeep = -1\nhost_keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB\"]\n", "c.toml:12: [backup.target] keep = -1"},
		{"backup target no host keys", base + "[backup]\nschedule = \"daily\"\nkeep = 3\n[backup.target]\nhost = \"b@h\"\ndir = \"/srv/b\"\n", "c.toml:9: [backup.target] host_keys is missing"},
		{"backup target bad host key", base + "[backup]\nschedule = \"daily\"\nkeep = 3\n[backup.target]\nhost = \"b@h\"\ndir = \"/srv/b\"\nhost_keys = [\"ssh-dss AAAA\"]\n", "c.toml:12: bad SSH public key"},
		{"backup containers without lxc", base + "[backup]\nschedule = \"daily\"\nkeep = 3\ncontainers = true\n", "c.toml:9: [backup] containers = true, but there is no [lxc] table"},
		{"bad ssh key", strings.Replace(base, "name = \"t\"", "name = \"t\"\nssh_authorized_keys = [\"ssh-dss AAAA\"]", 1), "c.toml:3: bad SSH public key"},
		{"bad timezone", strings.Replace(base, "name = \"t\"", "name = \"t\"\ntimezone = \"../etc\"", 1), "c.toml:3: bad timezone \"../etc\""},
		{"bad netboot", base + strings.Replace(ok1, "role", "netboot = \"pxe\"\nrole", 1), "c.toml:10: unknown netboot mode \"pxe\" (expected diskless, install)"},
		{"no identity key", base + "[[node]]\nname = \"a\"\nip = \"192.168.142.11\"\nrole = \"worker\"\n", "c.toml:6: node a has no mac, serial_number or card_serial (expected at least one"},
		{"bad serial_number", base + idNode("a", `serial_number = "0a1b 2c3d"`, 11), "c.toml:8: malformed serial_number \"0a1b 2c3d\" (expected the board's device tree serial-number"},
		{"long serial_number", base + idNode("a", `serial_number = "`+strings.Repeat("a", 65)+`"`, 11), "c.toml:8: malformed serial_number"},
		{"zero serial_number", base + idNode("a", `serial_number = "0000000000000000"`, 11), "c.toml:8: serial_number \"0000000000000000\" is all zeros"},
		{"bad card_serial", base + idNode("a", `card_serial = "0x1234abcde"`, 11), "c.toml:8: malformed card_serial \"0x1234abcde\" (expected the card's 32-bit serial in hex"},
		{"card_serial not hex", base + idNode("a", `card_serial = "SD1234"`, 11), "c.toml:8: malformed card_serial \"SD1234\""},
		{"zero card_serial", base + idNode("a", `card_serial = "0x0"`, 11), "c.toml:8: card_serial \"0x0\" is zero"},
		{"card_serial wrong type", base + idNode("a", `card_serial = 0x1234abcd`, 11), "c.toml:8: card_serial is a TOML int64, not a string (expected quotes, like card_serial = \"0x1234abcd\")"},
		{"serial_number wrong type", base + idNode("a", `serial_number = 0x1234`, 11), "c.toml:8: serial_number is a TOML int64, not a string"},
		{"dup serial_number", base + idNode("a", `serial_number = "0A1B2C3D"`, 11) + idNode("b", `serial_number = "0x0a1b2c3d"`, 12), "c.toml:13: duplicate serial_number \"0a1b2c3d\" (also node \"a\", line 8)"},
		{"dup card_serial", base + idNode("a", `card_serial = "1234ABCD"`, 11) + idNode("b", `card_serial = "0x1234abcd"`, 12), "c.toml:13: duplicate card_serial 0x1234abcd (also node \"a\", line 8)"},
		{"netboot without mac", base + idNode("a", "serial_number = \"0a1b\"\nnetboot = \"diskless\"", 11), "c.toml:9: node a: netboot = \"diskless\" needs the node's mac"},
		{"rollout max_rebooting", base + "[rollout]\nmax_rebooting = -1\n", "c.toml:7: [rollout] max_rebooting = -1"},
		{"rollout bad soak", base + "[rollout]\nmin_soak = \"ten minutes\"\n", "c.toml:7: bad duration \"ten minutes\""},
		{"rollout wave fraction", base + "[rollout]\n[[rollout.wave]]\nname = \"canary\"\nroles = [\"worker\"]\nfraction = 1.5\n", "c.toml:10: rollout wave \"canary\": fraction = 1.5"},
		{"rollout wave role", base + "[rollout]\n[[rollout.wave]]\nname = \"canary\"\nroles = [\"workers\"]\n", "c.toml:9: unknown role \"workers\""},
		{"rollout wave twice", base + "[rollout]\n[[rollout.wave]]\nname = \"w\"\nroles = [\"worker\"]\n[[rollout.wave]]\nname = \"w\"\nroles = [\"worker\"]\n", "c.toml:11: duplicate rollout wave name \"w\" (also line 8)"},
		{"rollout role in no wave", base + "[rollout]\n[[rollout.wave]]\nname = \"w\"\nroles = [\"worker\"]\n" + node("gw", "00:1e:06:00:00:09", "192.168.142.9", "gateway"), "c.toml:6: no rollout wave holds role gateway, so nodes gw would never be updated"},
		{"bad name", base + node("Node_1", "00:1e:06:00:00:01", "192.168.142.11", "worker"), "c.toml:7: bad name \"Node_1\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("c.toml", []byte(tc.src))
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error:\n%v\nwant it to contain:\n%s", err, tc.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not a *cluster.Error", err)
			}
		})
	}
}

func TestParseReportsAllErrors(t *testing.T) {
	src := base + "[[node]]\nname = \"a\"\nmac = \"00:1e:06:00:00:01\"\nip = \"192.168.1.1\"\nrole = \"worker\"\n" +
		"[[node]]\nname = \"a\"\nmac = \"00:1e:06:00:00:01\"\nip = \"192.168.142.12\"\nrole = \"worker\"\n"
	_, err := Parse("c.toml", []byte(src))
	if err == nil {
		t.Fatal("no error")
	}
	got := err.Error()
	want := "c.toml:9: node a: IP 192.168.1.1 is outside the subnet 192.168.142.0/24 (expected a host address in it)\n" +
		"c.toml:12: duplicate node name \"a\" (also node 1, line 7)\n" +
		"c.toml:13: duplicate MAC 00:1e:06:00:00:01 (node a has it too)"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func loadSeed(t testing.TB) *Config {
	t.Helper()
	c, err := Load("../../examples/seed-cluster.toml")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSeedExample(t *testing.T) {
	c := loadSeed(t)
	plans := c.Resolve()
	if len(plans) != 48 {
		t.Fatalf("%d nodes, want 48 (46 workers, gateway, router)", len(plans))
	}
	by := map[string]plan.Plan{}
	workers := 0
	for _, p := range plans {
		by[p.Name] = p
		if p.Role == "worker" {
			workers++
		}
	}
	if workers != 46 {
		t.Errorf("%d workers, want 46", workers)
	}
	n1 := by["node01"]
	if n1.CIDR() != "192.168.142.11/24" || n1.Gateway != "192.168.142.1" || n1.Governor != "ondemand" || !n1.IPForward {
		t.Errorf("node01 = %+v", n1)
	}
	if n1.LXC == nil || len(n1.LXC.Containers) != 1 || !reflect.DeepEqual(n1.LXC.Containers[0], plan.Container{Name: "haproxy", IP: "10.0.3.10/24", MAC: "00:16:3e:00:00:10"}) {
		t.Errorf("node01 lxc = %+v", n1.LXC)
	}
	if by["node03"].LXC == nil || len(by["node03"].LXC.Containers) != 0 {
		t.Errorf("node03 lxc = %+v", by["node03"].LXC)
	}
	gw := by["gw"]
	if gw.Gateway != "" || !gw.IPForward || len(gw.NAT) != 1 || gw.NAT[0] != (plan.NATRule{Out: "eth1", Source: "192.168.142.0/24"}) || gw.LXC != nil {
		t.Errorf("gw = %+v", gw)
	}
	r := by["mcbin"]
	if r.Gateway != "" || r.ForwardPolicy != "drop" || len(r.Forward) != 4 || r.Forward[3].Destination != "!192.168.0.0/16" {
		t.Errorf("mcbin = %+v", r)
	}
	for _, rt := range r.Routes {
		if rt.Via == "192.168.142.254" {
			t.Errorf("router routes via itself: %+v", rt)
		}
	}
	if len(n1.Routes) != 2 || n1.Routes[0] != (plan.Route{Destination: "192.168.0.0/24", Via: "192.168.142.254"}) {
		t.Errorf("node01 routes = %+v", n1.Routes)
	}
	if n1.Backup == nil || n1.Backup.Cron != "30 3 * * *" || n1.Backup.OnCalendar != "*-*-* 03:30:00" || n1.Backup.Keep != 7 {
		t.Errorf("backup = %+v", n1.Backup)
	}
}

func TestBakedRoundTrip(t *testing.T) {
	c := loadSeed(t)
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cluster.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := plan.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := b.ForMAC("00:1E:06:42:01:2E")
	if !ok || p.Name != "node46" || p.IP != "192.168.142.56" {
		t.Fatalf("ForMAC = %+v, %v", p, ok)
	}
	u := b.ForUnknown("AA:BB:CC:DD:EE:FF")
	if u.Name != "node-aabbccddeeff" || !u.DHCP() || u.LXC != nil || u.Gateway != "" || u.Governor != "ondemand" {
		t.Fatalf("ForUnknown = %+v", u)
	}
}

func FuzzParse(f *testing.F) {
	seed, err := os.ReadFile("../../examples/seed-cluster.toml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(base))
	f.Add([]byte(base + "[[node]]\nname=\"a\"\nmac=\"00:1e:06:00:00:01\"\nip=\"192.168.142.11\"\nrole=\"worker\"\n"))
	f.Add([]byte("node = [{name = \"a\", mac = \"x\"}]\n"))
	f.Add([]byte("[lxc]\naddress = \"10.0.3.1/32\"\n[[lxc.container]]\nip = \"10.0.3.1\"\n"))
	f.Add([]byte(base + "[[node]]\nname=\"a\"\nmac=\"00:1e:06:00:00:01\"\nip=\"192.168.142.11\"\nrole=\"worker\"\n[lxc]\nbridge=\"br\"\naddress=\"10.0.3.1/24\"\naddress6=\"fd00:3::1/127\"\n[[lxc.container]]\nname=\"c\"\nnode=\"a\"\nip=\"10.0.3.2\"\nip6=\"fd00:3::\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.toml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.toml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if _, err := json.Marshal(c); err != nil {
			t.Fatal(err)
		}
	})
}

// TestIdentityKeys: each key is normalised to what the node reads from
// sysfs, listed in identify_by in the order first boot tries them, and
// carried through the baked JSON to Identify.
func TestIdentityKeys(t *testing.T) {
	src := base +
		idNode("bymac", `mac = "00:1E:06:00:00:01"`, 11) +
		idNode("byserial", `serial_number = "0x0A1B2C3D"`, 12) +
		idNode("bycard", `card_serial = "1234ABCD"`, 13) +
		idNode("all", "mac = \"00:1e:06:00:00:04\"\ncard_serial = \"0xbeef\"\nserial_number = \"HKC2-0042\"", 14)
	c, err := Parse("c.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	type ids struct{ MAC, Serial, Card, By string }
	var got []ids
	for _, p := range c.Resolve() {
		got = append(got, ids{p.MAC, p.SerialNumber, p.CardSerial, strings.Join(p.IdentifyBy, ",")})
	}
	want := []ids{
		{"00:1e:06:00:00:01", "", "", "mac"},
		{"", "0a1b2c3d", "", "serial_number"},
		{"", "", "0x1234abcd", "card_serial"},
		{"00:1e:06:00:00:04", "hkc2-0042", "0x0000beef", "serial_number,card_serial,mac"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("resolved keys\n%+v\nwant\n%+v", got, want)
	}

	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cluster.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := plan.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		m    plan.Machine
		node string
	}{
		{plan.Machine{SerialNumber: plan.NormalizeSerialNumber("0A1B2C3D\x00"), NICs: []plan.NIC{{Iface: "eth0", MAC: "f2:3c:91:00:00:01"}}}, "byserial"},
		{plan.Machine{CardSerials: []string{"0x1234abcd"}, NICs: []plan.NIC{{Iface: "eth0", MAC: "f2:3c:91:00:00:01"}}}, "bycard"},
		{plan.Machine{NICs: []plan.NIC{{Iface: "eth0", MAC: "00:1e:06:00:00:01"}}}, "bymac"},
		{plan.Machine{SerialNumber: "hkc2-0042", CardSerials: []string{"0x0000beef"}, NICs: []plan.NIC{{Iface: "eth0", MAC: "00:1e:06:00:00:04"}}}, "all"},
	} {
		id, err := b.Identify(tc.m)
		if err != nil || id.Plan.Name != tc.node || !id.Known {
			t.Errorf("%+v: identity %q known=%v, %v; want %s", tc.m, id.Plan.Name, id.Known, err, tc.node)
		}
	}
}

// TestMACOnlyUnchanged: a MAC-only config bakes as before, apart from the
// version and identify_by.
func TestMACOnlyUnchanged(t *testing.T) {
	b := loadSeed(t).Bake()
	if b.Version != plan.Version || plan.Version != 2 {
		t.Errorf("baked version %d", b.Version)
	}
	for _, n := range b.Nodes {
		if n.MAC == "" || n.SerialNumber != "" || n.CardSerial != "" || !reflect.DeepEqual(n.IdentifyBy, []string{"mac"}) {
			t.Errorf("node %s: keys %q %q %q by %v", n.Name, n.MAC, n.SerialNumber, n.CardSerial, n.IdentifyBy)
		}
	}
	if b.Unknown.IdentifyBy != nil {
		t.Errorf("unknown plan identify_by %v", b.Unknown.IdentifyBy)
	}
}

func TestHosts(t *testing.T) {
	c, err := Load("../../examples/seed-cluster.toml")
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := c.Hosts()
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != len(c.Resolve()) {
		t.Errorf("%d hosts for %d nodes, all with a MAC", len(hosts), len(c.Resolve()))
	}
	if h := hosts[0]; h.Name != "gw" || h.MAC.String() != "00:1e:06:42:00:01" || h.IP.String() != "192.168.142.1" {
		t.Errorf("first host %+v", h)
	}
}

// TestRolloutWaves: no [rollout] gives a wave per role with the
// defaults; set values and per-wave overrides are kept.
func TestRolloutWaves(t *testing.T) {
	c, err := Parse("c.toml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	waves, k := c.RolloutWaves()
	if k != DefaultMaxRebooting || len(waves) != 3 || waves[0].Name != "workers" || waves[2].Roles[0] != "router" || waves[1].Fraction != 1 || waves[1].MinSoak != DefaultMinSoak {
		t.Errorf("defaults: K %d, %+v", k, waves)
	}
	c, err = Parse("c.toml", []byte(base+"[rollout]\nmax_rebooting = 2\nmax_failures = 1\nmin_soak = \"1h\"\n"+
		"[[rollout.wave]]\nname = \"canary\"\nroles = [\"worker\"]\nfraction = 0.1\nmax_failures = 0\n"+
		"[[rollout.wave]]\nname = \"rest\"\nroles = [\"worker\", \"gateway\", \"router\"]\nmin_soak = \"0s\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	waves, k = c.RolloutWaves()
	want := []Wave{
		{Name: "canary", Roles: []string{"worker"}, Fraction: 0.1, MaxFailures: 0, MinSoak: time.Hour},
		{Name: "rest", Roles: []string{"worker", "gateway", "router"}, Fraction: 1, MaxFailures: 1, MinSoak: 0},
	}
	if k != 2 || !reflect.DeepEqual(waves, want) {
		t.Errorf("K %d, waves %+v, want %+v", k, waves, want)
	}
}

// lxcfs is on unless the config turns it off: without it a container's
// /proc shows the host's memory and CPUs.
func TestLXCFSDefault(t *testing.T) {
	for _, tc := range []struct {
		line string
		want bool
	}{{"", true}, {"lxcfs = true\n", true}, {"lxcfs = false\n", false}} {
		cfg := base + "[[node]]\nname = \"a\"\nmac = \"00:1e:06:00:00:01\"\nip = \"192.168.142.11\"\nrole = \"worker\"\n" +
			"[lxc]\nbridge = \"lxcbr0\"\naddress = \"10.0.3.1/24\"\n" + tc.line
		c, err := Parse("c.toml", []byte(cfg))
		if err != nil {
			t.Fatal(err)
		}
		if p := c.Resolve()[0]; p.LXC == nil || p.LXC.LXCFS != tc.want {
			t.Errorf("%q: plan lxc %+v, want lxcfs %v", tc.line, p.LXC, tc.want)
		}
	}
}

func TestContainerRootfs(t *testing.T) {
	src := base + "[[node]]\nname = \"a\"\nmac = \"00:1e:06:00:00:01\"\nip = \"192.168.142.11\"\nrole = \"worker\"\n" +
		"[lxc]\nbridge = \"lxcbr0\"\naddress = \"10.0.3.1/24\"\n" +
		"[[lxc.container]]\nname = \"web\"\nnode = \"a\"\nip = \"10.0.3.2\"\nrootfs = \"oci:127.0.0.1:5000/apps/web:v1\"\n" +
		"[[lxc.container]]\nname = \"db\"\nnode = \"a\"\nip = \"10.0.3.3\"\nrootfs = \"oci:r.example/db@sha256:" + strings.Repeat("ab", 32) + "\"\n" +
		"[[lxc.container]]\nname = \"hand\"\nnode = \"a\"\nip = \"10.0.3.4\"\n" +
		"[[lxc.container]]\nname = \"box\"\nnode = \"a\"\nip = \"10.0.3.5\"\nrootfs = \"debian:bookworm\"\npackages = [\"busybox\", \"libc++1\", \"g++-12\", \"nginx-light\"]\n" +
		"[[lxc.container]]\nname = \"bare\"\nnode = \"a\"\nip = \"10.0.3.6\"\nrootfs = \"debian:trixie\"\n"
	c, err := Parse("c.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ct := range c.LXC.Containers {
		got = append(got, ct.Rootfs.String())
	}
	want := []string{"oci:127.0.0.1:5000/apps/web:v1", "oci:r.example/db@sha256:" + strings.Repeat("ab", 32), "", "debian:bookworm", "debian:trixie"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rootfs %q, want %q", got, want)
	}
	if box := c.LXC.Containers[3]; box.Rootfs.Suite != "bookworm" || strings.Join(box.Packages, " ") != "busybox libc++1 g++-12 nginx-light" {
		t.Errorf("box %+v", box)
	}
	notes := []string{
		"web on node a: oci:127.0.0.1:5000/apps/web:v1",
		"db on node a: oci:r.example/db@sha256:" + strings.Repeat("ab", 32),
		"box on node a: debian:bookworm + busybox libc++1 g++-12 nginx-light, configured at its first start",
		"bare on node a: debian:trixie, configured at its first start",
	}
	if got := c.ContainerNotes(); !reflect.DeepEqual(got, notes) {
		t.Errorf("notes %q, want %q", got, notes)
	}
	if r := c.LXC.Containers[0].Rootfs.Ref; r.Host != "127.0.0.1:5000" || r.Repo != "apps/web" || r.Tag != "v1" {
		t.Errorf("ref %+v", r)
	}
}

// TestContainerIPv6: address6 and ip6 are baked with the prefix length
// of address6, as IPv4 is with address's; a container without ip6 and a
// config without address6 bake as before.
func TestContainerIPv6(t *testing.T) {
	nodeA := "[[node]]\nname = \"a\"\nmac = \"00:1e:06:00:00:01\"\nip = \"192.168.142.11\"\nrole = \"worker\"\n"
	cts := "[[lxc.container]]\nname = \"web\"\nnode = \"a\"\nip = \"10.0.3.2\"\nip6 = \"FD00:5:0::10\"\nmac = \"00:16:3e:00:00:10\"\n" +
		"[[lxc.container]]\nname = \"db\"\nnode = \"a\"\nip = \"10.0.3.3\"\n"
	for _, tc := range []struct {
		name, lxc string
		want      plan.LXC
	}{
		{"with address6", "[lxc]\nbridge = \"lxcbr0\"\naddress = \"10.0.3.1/24\"\naddress6 = \"fd00:5::1/64\"\n" + cts, plan.LXC{
			Bridge: "lxcbr0", Address: "10.0.3.1/24", Address6: "fd00:5::1/64", LXCFS: true, Network: "veth",
			Containers: []plan.Container{
				{Name: "web", IP: "10.0.3.2/24", IP6: "fd00:5::10/64", MAC: "00:16:3e:00:00:10"},
				{Name: "db", IP: "10.0.3.3/24"},
			}}},
		{"without", "[lxc]\nbridge = \"lxcbr0\"\naddress = \"10.0.3.1/24\"\n" + strings.Replace(cts, "ip6 = \"FD00:5:0::10\"\n", "", 1), plan.LXC{
			Bridge: "lxcbr0", Address: "10.0.3.1/24", LXCFS: true, Network: "veth",
			Containers: []plan.Container{
				{Name: "web", IP: "10.0.3.2/24", MAC: "00:16:3e:00:00:10"},
				{Name: "db", IP: "10.0.3.3/24"},
			}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, data, b := parseBaked(t, base+nodeA+tc.lxc)
			if got := b.Nodes[0].LXC; got == nil || !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("baked lxc %+v, want %+v", got, tc.want)
			}
			if tc.want.Address6 == "" && (strings.Contains(string(data), "address6") || strings.Contains(string(data), "ip6")) {
				t.Errorf("baked JSON without IPv6 names it: %s", data)
			}
		})
	}
}

// parseBaked parses src and reads its baked JSON (data) back as a node
// does.
func parseBaked(t *testing.T, src string) (c *Config, data []byte, b plan.Baked) {
	t.Helper()
	c, err := Parse("c.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if data, err = json.Marshal(c); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	return c, data, b
}

// A target named by a node is reached at its ip; each node exports into
// its own directory; the target node keeps its own snapshots.
func TestBakeBackupTarget(t *testing.T) {
	src := `[cluster]
name = "t"
[network]
subnet = "192.168.142.0/24"
[lxc]
bridge = "lxcbr0"
address = "10.0.3.1/24"
[backup]
schedule = "daily"
keep = 3
[backup.target]
host = "backup@store"
dir = "/srv/backup"
keep = 30
host_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB store"]
` + idNode("n1", `mac = "00:1e:06:00:00:01"`, 11) + idNode("store", `mac = "00:1e:06:00:00:02"`, 2)
	c, err := Parse("c.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]plan.Plan{}
	for _, p := range c.Resolve() {
		by[p.Name] = p
	}
	n1 := by["n1"].Backup
	want := plan.BackupTarget{Host: "backup@192.168.142.2", Dir: "/srv/backup/n1", Keep: 30, HostKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB store"}}
	if n1 == nil || n1.Target == nil || !reflect.DeepEqual(*n1.Target, want) || !n1.Containers {
		t.Errorf("n1 backup = %+v, target %+v; want target %+v and containers", n1, n1.Target, want)
	}
	if s := by["store"].Backup; s == nil || s.Target != nil {
		t.Errorf("the target node exports to itself: %+v", s)
	}
	// A node not in the inventory has no name to export under.
	if u := c.Bake().Unknown.Backup; u == nil || u.Target != nil {
		t.Errorf("unknown node backup = %+v", u)
	}
}
