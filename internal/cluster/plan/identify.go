package plan

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// The keys an inventory node can be named by, as in the cluster config.
const (
	KeySerialNumber = "serial_number" // device tree /serial-number
	KeyCardSerial   = "card_serial"   // SD/eMMC card's CID serial
	KeyMAC          = "mac"
)

// KeyOrder is the order Identify tries the keys in, most trusted first:
//
//   - serial_number belongs to the board: U-Boot copies it from the SoC's
//     fused serial, so neither a reboot nor a new card changes it.
//   - card_serial belongs to the card, not the board: it is stable, but a
//     card moved to another board takes the node's name with it.
//   - mac comes last: the MACCHIATObin's are random per boot with mainline
//     U-Boot and the same on every board with Marvell's.
//
// Every key the machine has is looked up, not only the first that
// matches: two keys naming different nodes is a ConflictError, never a
// silent pick. The order decides which key Identity.By reports.
var KeyOrder = []string{KeySerialNumber, KeyCardSerial, KeyMAC}

// NormalizeMAC returns a MAC in the inventory's form (lower case).
func NormalizeMAC(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// NormalizeSerialNumber returns a device tree serial-number in the form
// compared: the property is a NUL-terminated string, its case and a "0x"
// prefix carry no meaning to the people typing it into the inventory.
func NormalizeSerialNumber(s string) string {
	s = strings.ToLower(strings.TrimSpace(strings.TrimRight(s, "\x00")))
	return strings.TrimPrefix(s, "0x")
}

// NormalizeCardSerial returns a card's CID serial in the kernel's form
// ("0x%08x", as /sys/block/mmcblk*/device/serial shows it) from hex with
// or without "0x", in any case; ok is false if s is not 32-bit hex.
func NormalizeCardSerial(s string) (string, bool) {
	s = strings.ToLower(strings.TrimSpace(strings.TrimRight(s, "\x00")))
	s = strings.TrimPrefix(s, "0x")
	if s == "" || len(s) > 8 {
		return "", false
	}
	v, err := strconv.ParseUint(s, 16, 32)
	if err != nil {
		return "", false
	}
	return fmt.Sprintf("0x%08x", v), true
}

// Keys returns the keys p has, in KeyOrder.
func (p Plan) Keys() []string {
	var keys []string
	for _, k := range KeyOrder {
		if p.Key(k) != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

// Key returns p's value of an identity key, "" if p has none.
func (p Plan) Key(key string) string {
	switch key {
	case KeySerialNumber:
		return p.SerialNumber
	case KeyCardSerial:
		return p.CardSerial
	case KeyMAC:
		return p.MAC
	}
	return ""
}

// ForMAC returns the plan of the inventory node with this MAC.
func (b *Baked) ForMAC(mac string) (Plan, bool) {
	return b.forKey(KeyMAC, NormalizeMAC(mac))
}

// forKey returns the inventory node whose key has value v (normalised).
func (b *Baked) forKey(key, v string) (Plan, bool) {
	if v == "" {
		return Plan{}, false
	}
	for _, n := range b.Nodes {
		if n.Key(key) == v {
			return n, true
		}
	}
	return Plan{}, false
}

// ForUnknown returns the plan for a node that is not in the inventory:
// Unknown with a name derived from the MAC ("node-aabbccddeeff") and DHCP.
func (b *Baked) ForUnknown(mac string) Plan {
	p := b.Unknown
	p.Name = "node-" + strings.ReplaceAll(NormalizeMAC(mac), ":", "")
	p.MAC = NormalizeMAC(mac)
	p.IP, p.PrefixLen, p.Gateway = "", 0, ""
	return p
}

// Identity is which inventory node this machine is.
type Identity struct {
	Plan Plan
	// Iface is the cluster interface: the one whose MAC matched, else the
	// first by name with a real MAC ("" if there is none); Plan.MAC is its
	// MAC on this boot.
	Iface string
	Known bool   // false: no key in the inventory (or a conflict), Plan from ForUnknown
	By    string // the first key in KeyOrder that matched; "" when not Known
	Value string // By's value on this machine
	// Machine is what was read from sysfs, for messages.
	Machine Machine
}

// Machine is what identifies this machine, as read from sysfs. Values are
// normalised; empty when absent.
type Machine struct {
	SerialNumber string
	CardSerials  []string // the root's card, or every MMC card when the root is elsewhere
	NICs         []NIC    // sorted by name; no loopback, no all-zero MAC
}

// values returns the machine's values of an identity key.
func (m Machine) values(key string) []string {
	switch key {
	case KeySerialNumber:
		if m.SerialNumber != "" {
			return []string{m.SerialNumber}
		}
	case KeyCardSerial:
		return m.CardSerials
	case KeyMAC:
		macs := make([]string, len(m.NICs))
		for i, n := range m.NICs {
			macs[i] = n.MAC
		}
		return macs
	}
	return nil
}

// NIC is one network interface.
type NIC struct{ Iface, MAC string }

// Match is one key of the machine that names an inventory node.
type Match struct{ Key, Value, Node string }

// ConflictError is a machine whose keys name more than one inventory node:
// the inventory is wrong somewhere, and picking one would give the node
// another's address.
type ConflictError struct{ Matches []Match }

func (e *ConflictError) Error() string {
	parts := make([]string, len(e.Matches))
	for i, m := range e.Matches {
		parts[i] = fmt.Sprintf("%s %s is node %s", m.Key, m.Value, m.Node)
	}
	return "this machine matches more than one inventory node: " + strings.Join(parts, ", ")
}

// ReadMachine reads the identity keys under sys (sysfs): the device tree
// serial-number, the CID serial of the MMC card holding rootPart (a kernel
// name like "mmcblk0p2"; when it is not on an MMC card or is unknown, the
// serials of every MMC card) and the interfaces' MACs.
func ReadMachine(sys, rootPart string) Machine {
	var m Machine
	if data, err := os.ReadFile(filepath.Join(sys, "firmware/devicetree/base/serial-number")); err == nil {
		if s := NormalizeSerialNumber(string(data)); !allZero(s) {
			m.SerialNumber = s
		}
	}
	disks := []string{mmcDisk(rootPart)}
	if disks[0] == "" || cardSerial(sys, disks[0]) == "" {
		disks = nil
		ents, _ := os.ReadDir(filepath.Join(sys, "block"))
		for _, e := range ents {
			if mmcDisk(e.Name()) == e.Name() {
				disks = append(disks, e.Name())
			}
		}
	}
	seen := map[string]bool{}
	for _, d := range disks {
		if s := cardSerial(sys, d); s != "" && !seen[s] {
			seen[s] = true
			m.CardSerials = append(m.CardSerials, s)
		}
	}
	files, _ := filepath.Glob(filepath.Join(sys, "class/net/*/address"))
	sort.Strings(files)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		mac := NormalizeMAC(string(data))
		if len(mac) != 17 || mac == "00:00:00:00:00:00" {
			continue
		}
		m.NICs = append(m.NICs, NIC{Iface: filepath.Base(filepath.Dir(f)), MAC: mac})
	}
	return m
}

// mmcDisk returns the MMC disk of a block device name ("mmcblk0" for
// "mmcblk0p2" or "mmcblk0"), or "" for anything else (including the
// eMMC's mmcblk0boot0 and mmcblk0rpmb, which repeat mmcblk0's card).
func mmcDisk(name string) string {
	rest, ok := strings.CutPrefix(name, "mmcblk")
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	if !ok || i == 0 {
		return ""
	}
	if p := rest[i:]; p != "" {
		if len(p) < 2 || p[0] != 'p' || strings.Trim(p[1:], "0123456789") != "" {
			return ""
		}
	}
	return "mmcblk" + rest[:i]
}

// cardSerial reads a card's CID serial; "" if absent or zero (cards
// without one report zero, and zero names no card).
func cardSerial(sys, disk string) string {
	data, err := os.ReadFile(filepath.Join(sys, "block", disk, "device/serial"))
	if err != nil {
		return ""
	}
	s, ok := NormalizeCardSerial(string(data))
	if !ok || s == "0x00000000" {
		return ""
	}
	return s
}

// allZero reports whether s is empty or only zeros: what boards and cards
// without a serial report.
func allZero(s string) bool { return strings.Trim(s, "0") == "" }

// Identify reads this machine's keys under sys (see ReadMachine) and finds
// it in b, trying the keys in KeyOrder. With no match it returns the
// unknown identity (ForUnknown) of the first interface with a real MAC.
// When the keys name more than one node it returns that unknown identity
// too, with a *ConflictError, so that the caller can say so and still
// boot a reachable node; with no interface at all either is an error.
func Identify(sys, rootPart string, b *Baked) (Identity, error) {
	id, err := b.Identify(ReadMachine(sys, rootPart))
	if errors.Is(err, ErrNoNIC) {
		err = fmt.Errorf("%s: %w", filepath.Join(sys, "class/net"), err)
	}
	return id, err
}

// ErrNoNIC is an unknown machine without a network interface to name it by.
var ErrNoNIC = errors.New("no network interface with a MAC address")

// Identify finds machine m in the inventory; see the function Identify.
func (b *Baked) Identify(m Machine) (Identity, error) {
	var matches []Match
	nicOf := map[string]NIC{} // node name -> the NIC whose MAC named it
	for _, key := range KeyOrder {
		for i, v := range m.values(key) {
			p, ok := b.forKey(key, v)
			if !ok {
				continue
			}
			matches = append(matches, Match{Key: key, Value: v, Node: p.Name})
			if _, have := nicOf[p.Name]; key == KeyMAC && !have {
				nicOf[p.Name] = m.NICs[i]
			}
		}
	}
	var conflict error
	if len(matches) > 0 {
		first := matches[0]
		for _, x := range matches[1:] {
			if x.Node != first.Node {
				conflict = &ConflictError{Matches: matches}
				break
			}
		}
		if conflict == nil {
			p, _ := b.forKey(first.Key, first.Value)
			id := Identity{Plan: p, Known: true, By: first.Key, Value: first.Value, Machine: m}
			nic, ok := nicOf[p.Name]
			if !ok && len(m.NICs) > 0 {
				// Named by a serial: the inventory's MAC, if any, is not on
				// this board (random, or the card moved); the cluster
				// interface is the first one.
				nic, ok = m.NICs[0], true
			}
			if ok {
				id.Iface, id.Plan.MAC = nic.Iface, nic.MAC
			}
			return id, nil
		}
	}
	if len(m.NICs) == 0 {
		if conflict != nil {
			return Identity{Machine: m}, conflict
		}
		return Identity{Machine: m}, ErrNoNIC
	}
	return Identity{Plan: b.ForUnknown(m.NICs[0].MAC), Iface: m.NICs[0].Iface, Machine: m}, conflict
}
