package uboot

import (
	"fmt"
	"net"
	"strings"
)

// Entry is one way to boot: the files U-Boot loads and the kernel command
// line. On a card (extlinux.conf, boot.scr) paths are absolute on the FAT
// partition ("/Image"); in a pxelinux file they are relative to the TFTP
// directory of the boot file, because U-Boot's `pxe` refuses absolute
// paths.
type Entry struct {
	Label  string
	Kernel string
	Initrd string // optional
	// FDT is the device tree file; empty where firmware provides one
	// (QEMU virt), and U-Boot then passes its own tree.
	FDT    string
	Append string
}

// Menu is a whole extlinux/pxelinux file. Timeout is in tenths of a
// second; without a `prompt` line U-Boot boots Default at once, so it
// matters only when someone adds one by hand.
type Menu struct {
	Title   string
	Timeout int
	Default string // label; "" = the first entry
	Entries []Entry
}

// Extlinux renders extlinux.conf with a single entry.
func Extlinux(e Entry) string {
	return Menu{Title: "mkimage", Timeout: 10, Entries: []Entry{e}}.String()
}

// String renders the menu in the syntax U-Boot's pxe_utils parses (shared
// by sysboot for extlinux.conf and pxe for pxelinux.cfg files).
func (m Menu) String() string {
	var b strings.Builder
	def := m.Default
	if def == "" && len(m.Entries) > 0 {
		def = m.Entries[0].Label
	}
	if def != "" {
		fmt.Fprintf(&b, "default %s\n", def)
	}
	fmt.Fprintf(&b, "timeout %d\n", m.Timeout)
	if m.Title != "" {
		fmt.Fprintf(&b, "menu title %s\n", m.Title)
	}
	for _, e := range m.Entries {
		fmt.Fprintf(&b, "\nlabel %s\n", e.Label)
		fmt.Fprintf(&b, "    kernel %s\n", e.Kernel)
		if e.Initrd != "" {
			fmt.Fprintf(&b, "    initrd %s\n", e.Initrd)
		}
		if e.FDT != "" {
			fmt.Fprintf(&b, "    fdt %s\n", e.FDT)
		}
		if e.Append != "" {
			fmt.Fprintf(&b, "    append %s\n", e.Append)
		}
	}
	return b.String()
}

// Validate rejects values that would break the line-based syntax or the
// boot script's quoting.
func (e Entry) Validate() error {
	for _, f := range []struct{ name, v string }{
		{"label", e.Label}, {"kernel", e.Kernel}, {"initrd", e.Initrd}, {"fdt", e.FDT}, {"append", e.Append},
	} {
		if strings.ContainsAny(f.v, "\n\r\x00") {
			return fmt.Errorf("boot entry %s %q contains a line break or NUL", f.name, f.v)
		}
	}
	if e.Label == "" || strings.ContainsAny(e.Label, " \t") {
		return fmt.Errorf("boot entry label %q: want one word", e.Label)
	}
	if e.Kernel == "" {
		return fmt.Errorf("boot entry %s has no kernel", e.Label)
	}
	for _, f := range []struct{ name, v string }{{"kernel", e.Kernel}, {"initrd", e.Initrd}, {"fdt", e.FDT}} {
		if strings.ContainsAny(f.v, " \t\"'$;\\") {
			return fmt.Errorf("boot entry %s path %q contains a space, quote, $, ; or backslash", f.name, f.v)
		}
	}
	if strings.ContainsAny(e.Append, "\"$\\") {
		return fmt.Errorf("boot entry append %q contains \", $ or \\ (U-Boot's shell would interpret it)", e.Append)
	}
	return nil
}

// BootScript returns the text of a boot.scr for U-Boot builds that run
// distro boot scripts but lack extlinux support. Distro boot sets devtype,
// devnum and distro_bootpart before it sources the script. Where the build
// has no fdt_addr_r (qemu_arm64) or the entry names no FDT, the script
// passes ${fdt_addr}, the tree firmware already placed in memory.
//
// Each load guards the next step with if/then: `load ... || exit` does not
// stop a sourced script in U-Boot 2023.01 (seen in QEMU: it went on to
// booti an empty kernel address).
func BootScript(e Entry) (string, error) {
	if err := e.Validate(); err != nil {
		return "", err
	}
	var b strings.Builder
	depth := 0
	line := func(format string, args ...any) {
		b.WriteString(strings.Repeat("    ", depth))
		fmt.Fprintf(&b, format+"\n", args...)
	}
	open := func(cond string) { line("if %s; then", cond); depth++ }
	load := func(addr, file string) string {
		return fmt.Sprintf("load ${devtype} ${devnum}:${distro_bootpart} ${%s} %s", addr, file)
	}
	line("# %s: written by mkimage for U-Boot without extlinux support", e.Label)
	line("setenv bootargs \"%s\"", e.Append)
	open(load("kernel_addr_r", e.Kernel))
	initrd := "-"
	if e.Initrd != "" {
		open(load("ramdisk_addr_r", e.Initrd))
		// filesize is overwritten by the next load; keep the initrd's.
		line("setenv initrd_size ${filesize}")
		initrd = "${ramdisk_addr_r}:${initrd_size}"
	}
	boot := func(fdt string) { line("booti ${kernel_addr_r} %s %s", initrd, fdt) }
	if e.FDT != "" {
		open(`test -n "${fdt_addr_r}"`)
		open(load("fdt_addr_r", e.FDT))
		boot("${fdt_addr_r}")
		depth--
		line("fi")
		depth--
		line("else")
		depth++
		boot("${fdt_addr}")
	} else {
		boot("${fdt_addr}")
	}
	for depth > 0 {
		depth--
		line("fi")
	}
	line("echo \"mkimage boot.scr: could not boot %s\"", e.Label)
	return b.String(), nil
}

// PXEFileForMAC returns the pxelinux file U-Boot asks for first for a
// NIC: "pxelinux.cfg/01-aa-bb-cc-dd-ee-ff" (ARP type 1, lowercase, dashes).
func PXEFileForMAC(mac net.HardwareAddr) (string, error) {
	if len(mac) != 6 {
		return "", fmt.Errorf("MAC address %q: want 6 bytes (Ethernet)", mac.String())
	}
	return "pxelinux.cfg/01-" + strings.ReplaceAll(strings.ToLower(mac.String()), ":", "-"), nil
}

// PXEDefaultFiles returns the fallback pxelinux files for the given
// default names (a board's pxe_defaults, most specific first), ending with
// plain "default".
func PXEDefaultFiles(names []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, n := range append(append([]string{}, names...), "default") {
		if n == "" || seen[n] {
			continue
		}
		seen[n] = true
		out = append(out, "pxelinux.cfg/"+n)
	}
	return out
}

// PXEConfig renders a pxelinux file for one entry; same syntax as
// extlinux.conf, with paths relative to the boot file's TFTP directory.
func PXEConfig(e Entry) string {
	return Menu{Title: "mkimage netboot", Timeout: 10, Entries: []Entry{e}}.String()
}

// ParseMenu reads back the keys Menu writes (and U-Boot reads). Unknown
// keys are errors so a round trip proves every line is understood.
func ParseMenu(s string) (Menu, error) {
	var m Menu
	var cur *Entry
	for i, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, val, _ := strings.Cut(line, " ")
		val = strings.TrimSpace(val)
		if key == "menu" {
			sub, rest, _ := strings.Cut(val, " ")
			if sub != "title" {
				return m, fmt.Errorf("line %d: unknown menu key %q", i+1, sub)
			}
			m.Title = strings.TrimSpace(rest)
			continue
		}
		switch key {
		case "default":
			m.Default = val
		case "timeout":
			if _, err := fmt.Sscanf(val, "%d", &m.Timeout); err != nil {
				return m, fmt.Errorf("line %d: timeout %q: %w", i+1, val, err)
			}
		case "label":
			m.Entries = append(m.Entries, Entry{Label: val})
			cur = &m.Entries[len(m.Entries)-1]
		case "kernel", "linux", "initrd", "fdt", "append":
			if cur == nil {
				return m, fmt.Errorf("line %d: %s before any label", i+1, key)
			}
			switch key {
			case "kernel", "linux":
				cur.Kernel = val
			case "initrd":
				cur.Initrd = val
			case "fdt":
				cur.FDT = val
			case "append":
				cur.Append = val
			}
		default:
			return m, fmt.Errorf("line %d: unknown key %q", i+1, key)
		}
	}
	return m, nil
}

// Setenv is one variable a boot script sets before it boots.
type Setenv struct{ Name, Value string }

// PXEScript returns the text of a netboot boot.scr.uimg: it sets env
// (TFTP block and window size, where booti unpacks a compressed kernel),
// echoes what U-Boot then holds, so a console log shows the values in
// use, and runs U-Boot's pxelinux walk (01-<mac>, the IP in hex, the
// board's default names, default). The `dhcp` boot target fetched the
// script itself with U-Boot's defaults; every later TFTP load uses these.
func PXEScript(env []Setenv) (string, error) {
	var b, shown strings.Builder
	for _, e := range env {
		if e.Name == "" || strings.Trim(e.Name, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
			return "", fmt.Errorf("boot script variable %q: want lowercase letters, digits and _", e.Name)
		}
		if e.Value == "" || strings.ContainsAny(e.Value, " \t\n\r\x00\"'$;\\") {
			return "", fmt.Errorf("boot script variable %s=%q: want one word with no quote, $, ; or backslash", e.Name, e.Value)
		}
		fmt.Fprintf(&b, "setenv %s %s\n", e.Name, e.Value)
		fmt.Fprintf(&shown, " %s ${%s}", e.Name, e.Name)
	}
	if len(env) > 0 {
		fmt.Fprintf(&b, "echo mkimage netboot:%s\n", shown.String())
	}
	b.WriteString("echo mkimage netboot: pxe get\npxe get && pxe boot\necho mkimage netboot: pxe boot failed\n")
	return b.String(), nil
}
